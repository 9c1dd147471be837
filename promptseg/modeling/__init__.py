"""The SAM network, with the same class names and constructor arguments as ``segment_anything.modeling``."""

from promptseg.modeling.common import LayerNorm
from promptseg.modeling.image_encoder import ImageEncoderViT
from promptseg.modeling.mask_decoder import MaskDecoder
from promptseg.modeling.prompt_encoder import PromptEncoder
from promptseg.modeling.sam import Sam
from promptseg.modeling.transformer import TwoWayTransformer

__all__ = ["ImageEncoderViT", "LayerNorm", "MaskDecoder", "PromptEncoder", "Sam", "TwoWayTransformer"]
