"""Loading COCO ground truth and results for pycocotools' ``COCOeval`` (a lazily imported optional package)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from pathlib import Path
from typing import Any, Union

from promptseg.errors import optional_module

Source = Union[str, "os.PathLike[str]", dict, list]


def pycocotools_classes() -> tuple[type, type]:
    """(COCO, COCOeval), or an ImportError saying how to install them."""
    install = 'pip install "promptseg[coco]"'
    coco = optional_module("pycocotools.coco", "the COCO evaluations", install)
    return coco.COCO, optional_module("pycocotools.cocoeval", "the COCO evaluations", install).COCOeval


def _load(source: Source, what: str) -> Any:
    if isinstance(source, (dict, list)):
        return copy.deepcopy(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    return json.loads(path.read_text())


def load_ground_truth(source: Source) -> Any:
    """A pycocotools ``COCO`` of a COCO (or LVIS) instances dataset (a path or the loaded dict; not modified)."""
    COCO, _ = pycocotools_classes()
    dataset = _load(source, "ground-truth")
    if not isinstance(dataset, dict) or not {"images", "annotations", "categories"} <= dataset.keys():
        raise ValueError("ground truth must be a COCO instances dataset with 'images', 'annotations' and 'categories'")
    for annotation in dataset["annotations"]:
        annotation.setdefault("iscrowd", 0)  # LVIS leaves it out; COCOeval reads it
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_results(ground_truth: Any, source: Source) -> tuple[Any, list[dict]]:
    """The ``COCO`` of a results list (a path or the list; not modified) on ``ground_truth``, and the list.

    Every result needs ``image_id``, ``segmentation`` (RLE) and ``score``; an empty list is allowed.
    """
    results = _load(source, "results")
    if not isinstance(results, list):
        raise ValueError(f"results must be a COCO results list, got {type(results).__name__}")
    known = set(ground_truth.getImgIds())
    for index, result in enumerate(results):
        missing = {"image_id", "segmentation", "score"} - set(result)
        if missing:
            raise ValueError(f"result {index} lacks {sorted(missing)}; COCO segmentation results need image_id, segmentation, score")
        if result["image_id"] not in known:
            raise ValueError(f"result {index} has image_id {result['image_id']}, which the ground truth does not list")
    if not results:
        return None, results
    with contextlib.redirect_stdout(io.StringIO()):
        return ground_truth.loadRes(results), results


def run_cocoeval(ground_truth: Any, detections: Any, use_categories: bool, max_dets: list[int]) -> Any:
    """A segmentation ``COCOeval`` after evaluate() and accumulate() (its printing silenced)."""
    _, COCOeval = pycocotools_classes()
    evaluator = COCOeval(ground_truth, detections, iouType="segm")
    evaluator.params.useCats = int(use_categories)
    evaluator.params.maxDets = list(max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator
