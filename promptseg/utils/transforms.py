"""``segment_anything.utils.transforms`` under its official path; the code lives in :mod:`promptseg.prompts.frames`."""

from promptseg.prompts.frames import ResizeLongestSide

__all__ = ["ResizeLongestSide"]
