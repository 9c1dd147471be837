"""Reading edge maps and ground-truth boundary maps from files.

Edge maps: 8-bit grey PNGs (value / 255) or ``.npy`` float arrays in [0, 1]. Ground truth: a 0/non-0
PNG (one annotator), or a BSDS500 ``groundTruth/*.mat`` file holding several annotators' boundaries
(read with scipy, which the BSDS format needs: ``pip install scipy``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EDGE_SUFFIXES = (".png", ".npy")
GT_SUFFIXES = (".png", ".mat")


def read_edge_map(path: Path) -> np.ndarray:
    """(H, W) float32 edge strengths in [0, 1] from a PNG or .npy file."""
    if path.suffix == ".npy":
        edge = np.load(path).astype(np.float32)
    else:
        edge = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    if edge.ndim != 2:
        raise ValueError(f"{path}: an edge map must be (H, W), got shape {edge.shape}")
    return edge


def read_boundaries(path: Path) -> list[np.ndarray]:
    """Per annotator, an (H, W) bool boundary map, from a PNG or a BSDS500 .mat file."""
    if path.suffix == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError as error:
            raise ImportError(f"reading BSDS500 ground truth ({path.name}) needs scipy: pip install scipy") from error
        annotators = loadmat(str(path))["groundTruth"][0]
        return [np.asarray(annotator["Boundaries"][0, 0], dtype=bool) for annotator in annotators]
    return [np.asarray(Image.open(path).convert("L")) > 0]


def paired_files(gt_dir: Path, pred_dir: Path) -> list[tuple[Path, Path]]:
    """(ground truth, edge map) file pairs matched by stem, for every ground-truth file; a missing edge map is an error."""
    for folder, what in ((gt_dir, "ground-truth"), (pred_dir, "edge-map")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {folder}")
    gts = sorted(p for p in gt_dir.iterdir() if p.suffix in GT_SUFFIXES)
    if not gts:
        raise ValueError(f"no ground-truth boundary files ({', '.join(GT_SUFFIXES)}) in {gt_dir}")
    preds = {p.stem: p for p in sorted(pred_dir.iterdir()) if p.suffix in EDGE_SUFFIXES}
    missing = [gt.stem for gt in gts if gt.stem not in preds]
    if missing:
        raise ValueError(f"{len(missing)} ground-truth image(s) have no edge map in {pred_dir}, e.g. {missing[0]}")
    return [(gt, preds[gt.stem]) for gt in gts]
