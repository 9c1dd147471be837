"""``segment_anything.build_sam`` under its official path; the code lives in :mod:`promptseg.build`."""

from promptseg.build import build_sam, build_sam_vit_b, build_sam_vit_h, build_sam_vit_l, sam_model_registry

__all__ = ["build_sam", "build_sam_vit_b", "build_sam_vit_h", "build_sam_vit_l", "sam_model_registry"]
