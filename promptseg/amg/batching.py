"""The official mask generator's batching helpers: fixed-size batches of aligned sequences, and
``MaskData``, named columns of per-mask values filtered and concatenated together.

promptseg's generator keeps its candidates in :class:`promptseg.amg.candidates.Candidates`
instead; these keep the official ``segment_anything.utils.amg`` names, arguments and results for
code written against them.
"""

from __future__ import annotations

import copy
from typing import Any, ItemsView, Iterator, Sequence, Union

import numpy as np
import torch

Column = Union[list, np.ndarray, torch.Tensor]
COLUMN_TYPES = (list, np.ndarray, torch.Tensor)


def batch_iterator(batch_size: int, *args: Sequence[Any]) -> Iterator[list[Any]]:
    """Yield ``[arg[i:i + batch_size] for arg in args]`` for i = 0, batch_size, ...

    Every argument must have the same length N; the last batch holds the N % batch_size
    leftovers. Checked when iteration starts (a generator, as officially).
    """
    if not args or any(len(arg) != len(args[0]) for arg in args):
        raise ValueError("batch_iterator needs one or more sequences, all of the same length")
    for start in range(0, len(args[0]), batch_size):
        yield [arg[start : start + batch_size] for arg in args]


def _check_column(key: str, value: Any) -> None:
    if not isinstance(value, COLUMN_TYPES):
        kind = type(value).__name__
        raise TypeError(f"MaskData only holds lists, numpy arrays and torch tensors; {key!r} is a {kind}")


class MaskData:
    """Named columns of per-mask values (lists, numpy arrays or torch tensors, N rows each).

    ``data[key]`` reads, sets or deletes a column; :meth:`filter` keeps the same rows of every
    column, :meth:`cat` appends another ``MaskData``'s rows, :meth:`to_numpy` moves tensors to
    host arrays. A column set to None (by ``cat`` from a None) stays None.
    """

    def __init__(self, **kwargs: Column) -> None:
        for key, value in kwargs.items():
            _check_column(key, value)
        self._stats: dict[str, Any] = dict(kwargs)

    def __setitem__(self, key: str, item: Column) -> None:
        _check_column(key, item)
        self._stats[key] = item

    def __delitem__(self, key: str) -> None:
        del self._stats[key]

    def __getitem__(self, key: str) -> Any:
        return self._stats[key]

    def items(self) -> ItemsView[str, Any]:
        return self._stats.items()

    def filter(self, keep: torch.Tensor) -> None:
        """Keep, in every column, the rows selected by ``keep``: (N,) bool or (K,) integer indices."""
        keep = torch.as_tensor(keep)
        for key, value in self._stats.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                self._stats[key] = value[keep.to(value.device)]
            elif isinstance(value, np.ndarray):
                self._stats[key] = value[keep.detach().cpu().numpy()]
            elif isinstance(value, list):
                rows = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
                self._stats[key] = [value[row] for row in rows.tolist()]
            else:
                raise TypeError(f"MaskData key {key!r} has an unsupported type {type(value).__name__}")

    def cat(self, new_stats: "MaskData") -> None:
        """Append the rows of ``new_stats``; its columns missing (or None) here are copied in."""
        for key, value in new_stats.items():
            current = self._stats.get(key)
            if current is None:
                self._stats[key] = copy.deepcopy(value)
            elif isinstance(value, torch.Tensor):
                self._stats[key] = torch.cat([current, value], dim=0)
            elif isinstance(value, np.ndarray):
                self._stats[key] = np.concatenate([current, value], axis=0)
            elif isinstance(value, list):
                self._stats[key] = current + copy.deepcopy(value)
            else:
                raise TypeError(f"MaskData key {key!r} has an unsupported type {type(value).__name__}")

    def to_numpy(self) -> None:
        """Replace every tensor column by its host numpy array."""
        for key, value in self._stats.items():
            if isinstance(value, torch.Tensor):
                self._stats[key] = value.detach().cpu().numpy()
