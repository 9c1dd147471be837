"""``segment_anything.utils.amg`` under its official path: re-exports of
:mod:`promptseg.amg.official` (the official helper names and parameters, shared with
``promptseg.sam2.utils.amg``)."""

from promptseg.amg import official
from promptseg.amg.official import *  # noqa: F401,F403 -- the official names, listed in official.__all__

__all__ = list(official.__all__)
