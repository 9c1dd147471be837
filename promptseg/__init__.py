"""promptseg: a fast, faithful Segment Anything engine.

A drop-in for ``segment_anything``: the same names, arguments and outputs.
"""

from promptseg.automatic import SamAutomaticMaskGenerator
from promptseg.build_sam import build_sam, build_sam_vit_b, build_sam_vit_h, build_sam_vit_l, sam_model_registry
from promptseg.errors import CheckpointError, ImageNotSetError, UnknownModelTypeError
from promptseg.predictor import SamPredictor
from promptseg.find import find_instances
from promptseg.version import __version__

__all__ = [
    "CheckpointError",
    "ImageNotSetError",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "UnknownModelTypeError",
    "build_sam",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "find_instances",
    "sam_model_registry",
]
