"""``segment_anything.build_sam`` under its official path; the code lives in :mod:`promptseg.build`.

:func:`build_sam` here (also ``promptseg.build_sam``) is :func:`promptseg.build.build_sam` followed by
:func:`promptseg.export.prepare_engine`: where an ONNX Runtime CPU engine is asked for (``engine=``
or ``$PROMPTSEG_CPU_ENGINE``), the model's graphs are exported to the cache the first time. It lives
on this floor because exporting is ``promptseg.export``'s, above the model loading of ``promptseg.build``.
"""

from __future__ import annotations

import functools
from typing import Any

from promptseg import build
from promptseg.build import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l, sam_model_registry
from promptseg.export import prepare_engine
from promptseg.modeling import Sam

__all__ = ["build_sam", "build_sam_vit_b", "build_sam_vit_h", "build_sam_vit_l", "sam_model_registry"]


@functools.wraps(build.build_sam)  # the same signature and docstring
def build_sam(*args: Any, **kwargs: Any) -> Sam:
    # promptseg.build.build_sam, then the ONNX Runtime export (once, cached) where an engine asks for it
    return prepare_engine(build.build_sam(*args, **kwargs))
