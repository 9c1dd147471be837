"""``segment_anything.automatic_mask_generator`` under its official path; the code lives in
:mod:`promptseg.automatic`."""

from promptseg.automatic import SamAutomaticMaskGenerator

__all__ = ["SamAutomaticMaskGenerator"]
