"""Helpers with the same module paths as ``segment_anything.utils``."""
