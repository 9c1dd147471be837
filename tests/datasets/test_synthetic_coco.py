"""The synthetic COCO writer (promptseg/data/synthetic_coco.py), checked with pycocotools, and its
boundary maps."""

from __future__ import annotations

import numpy as np
import pytest

from promptseg.data.synthetic import generate_scene
from promptseg.data.synthetic_coco import CATEGORY_NAMES, boundary_map, region_labels, write_synthetic_coco

COCO = pytest.importorskip("pycocotools.coco").COCO
SEEDS = [(5, 0), (5, 1), (5, 2)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic_coco")
    return folder, write_synthetic_coco(folder, SEEDS)


def test_written_dataset_matches_the_scenes(dataset):
    folder, path = dataset
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    for image_id, seed in zip([1, 2, 3], SEEDS):
        scene = generate_scene(seed)
        info = coco.loadImgs([image_id])[0]
        assert info["file_name"] == f"{image_id:012d}.png"
        assert (folder / "images" / info["file_name"]).is_file()
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(annotations) == len(scene.masks)
        for annotation, mask, kind in zip(annotations, scene.masks, scene.kinds):
            assert np.array_equal(coco.annToMask(annotation).astype(bool), mask)
            assert annotation["area"] == mask.sum()
            assert CATEGORY_NAMES[annotation["category_id"] - 1] == kind
            ys, xs = np.nonzero(mask)
            assert annotation["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        from PIL import Image

        boundaries = np.asarray(Image.open(folder / "boundaries" / info["file_name"])) > 0
        assert np.array_equal(boundaries, boundary_map(region_labels(scene)))


def test_boundary_map_marks_each_region_change_once():
    labels = np.zeros((6, 6), dtype=np.int64)
    labels[2:4, 2:4] = 1
    edges = boundary_map(labels)
    # The 2x2 square: 2 pixels left of it, 2 above it, and its own right column and bottom row (3).
    assert edges.sum() == 7 and edges[1, 2] and edges[2, 1] and edges[3, 3] and not edges[2, 2] and not edges[0, 0]
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        boundary_map(labels[None])
