"""SAM 2 / SAM 2.1 image models: a drop-in for the official ``sam2`` package's image API.

Change ``from sam2.build_sam import build_sam2`` to ``from promptseg.sam2.build_sam import build_sam2``
(and likewise ``sam2.sam2_image_predictor``, ``sam2.automatic_mask_generator``, ``sam2.modeling``,
``sam2.utils``); the official config names load without hydra and official checkpoints load
strictly, their video-only weights skipped. The main names are also here.
"""

from promptseg.sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from promptseg.sam2.build_sam import build_sam2, build_sam2_hf
from promptseg.sam2.modeling.sam2_base import SAM2Base
from promptseg.sam2.sam2_image_predictor import SAM2ImagePredictor

__all__ = ["SAM2AutomaticMaskGenerator", "SAM2Base", "SAM2ImagePredictor", "build_sam2", "build_sam2_hf"]
