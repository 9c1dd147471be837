"""Datasets for training and evaluating the promptable segmentation task."""
