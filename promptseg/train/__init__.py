"""Training and fine-tuning SAM on the promptable segmentation task with simulated interactive prompts."""

from promptseg.train.config import TrainConfig
from promptseg.train.loop import Trainer

__all__ = ["TrainConfig", "Trainer"]
