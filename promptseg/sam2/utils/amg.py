"""``sam2.utils.amg`` under its official path: the mask generator's helpers. The official SAM 2
module is SAM's with one change, which :class:`MaskData` carries: ``to_numpy`` casts tensors to
float32 first; everything else is :mod:`promptseg.amg.official`'s (the official names and arguments, shared with
``promptseg.utils.amg``)."""

from __future__ import annotations

import torch

from promptseg.amg.batching import MaskData as _SamMaskData
from promptseg.amg import official
from promptseg.amg.official import *  # noqa: F401,F403 -- the official names, listed in official.__all__

__all__ = list(official.__all__)  # MaskData: SAM 2's, below


class MaskData(_SamMaskData):
    """Named columns of per-mask values (see :class:`promptseg.amg.batching.MaskData`); :meth:`to_numpy`
    casts tensors to float32 before moving them to the host, as SAM 2 does (so boxes become float)."""

    def to_numpy(self) -> None:
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                self[key] = value.float().detach().cpu().numpy()
