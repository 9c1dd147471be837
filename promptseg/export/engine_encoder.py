"""``EngineImageEncoder`` lives in :mod:`promptseg.encoders.engine` (behind the ImageEncoder seam); this
module keeps its old import path."""

from promptseg.encoders.engine import EngineImageEncoder

__all__ = ["EngineImageEncoder"]
