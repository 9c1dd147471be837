"""Drawing masks and prompts over an image: re-exported from :mod:`promptseg.drawing`, where the
API layer (the Ray pipeline's writer) can use it too."""

from promptseg.drawing import overlay

__all__ = ["overlay"]
