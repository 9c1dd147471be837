"""The mask generator's building blocks (promptseg/amg: crop boxes and grids, stability and crop-edge
filters, batched RLE, small-region removal) against the official ones, pycocotools and OpenCV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import promptseg.utils.amg as our_amg
from promptseg.amg.regions import remove_small_regions_batch
from promptseg.amg.rle import encode_rle
from promptseg.io.rle import column_major_counts
from tests._support import OFFICIAL_MISSING

mask_utils = pytest.importorskip("pycocotools.mask")
official_amg = pytest.importorskip("segment_anything.utils.amg", reason=OFFICIAL_MISSING)


def _random_masks(count: int, height: int, width: int, seed: int) -> torch.Tensor:
    """(count, height, width) bool: blobs of varied density, plus an all-set and an all-clear mask."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, 1, height, width, generator=generator)
    smooth = torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2)[:, 0]
    levels = torch.rand(count, 1, 1, generator=generator) * 0.2 + 0.4
    masks = smooth > levels
    masks[0] = True
    masks[1] = False
    return masks


# ------------------------------------------------------------------ grids
@pytest.mark.parametrize("size", [(534, 800), (1200, 1800), (37, 53)])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_crop_boxes_and_grids_equal_official(size, layers):
    ratio = 512 / 1500
    assert our_amg.generate_crop_boxes(size, layers, ratio) == official_amg.generate_crop_boxes(size, layers, ratio)
    ours = our_amg.build_all_layer_point_grids(16, layers, 2)
    official = official_amg.build_all_layer_point_grids(16, layers, 2)
    assert all(np.array_equal(a, b) for a, b in zip(ours, official)) and len(ours) == len(official)


def test_stability_and_crop_edge_equal_official():
    logits = torch.randn(6, 40, 30, generator=torch.Generator().manual_seed(0)) * 3
    expected = official_amg.calculate_stability_score(logits, 0.0, 1.0)
    assert torch.equal(our_amg.calculate_stability_score(logits, 0.0, 1.0), expected)
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 100, 80], [30, 2, 190, 99], [0, 0, 0, 0]])
    for crop in ([0, 0, 200, 100], [50, 20, 250, 120]):
        ours = our_amg.is_box_near_crop_edge(boxes, crop, [0, 0, 250, 120])
        assert torch.equal(ours, official_amg.is_box_near_crop_edge(boxes, crop, [0, 0, 250, 120]))


# -------------------------------------------------------------------- RLE
@pytest.mark.parametrize("height, width", [(61, 47), (1, 1), (300, 200)])
def test_rle_round_trips_through_pycocotools(height, width):
    masks = _random_masks(6, height, width, seed=height)
    uncompressed = encode_rle(masks).to_uncompressed()
    compressed = encode_rle(masks).to_coco()
    assert uncompressed == official_amg.mask_to_rle_pytorch(masks)
    for mask, rle, coco in zip(masks.numpy(), uncompressed, compressed):
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        # Our uncompressed counts are pycocotools' counts: compressing them gives its exact string.
        assert mask_utils.frPyObjects(rle, height, width)["counts"] == reference["counts"]
        assert coco == {"size": [height, width], "counts": reference["counts"].decode()}
        assert np.array_equal(mask_utils.decode(coco).astype(bool), mask)
        assert np.array_equal(our_amg.rle_to_mask(rle), mask)
        assert our_amg.area_from_rle(rle) == int(mask.sum()) == int(mask_utils.area(coco))
        assert our_amg.coco_encode_rle(rle) == official_amg.coco_encode_rle(rle)


def test_rle_of_transposed_storage_and_large_counts():
    storage = _random_masks(3, 50, 70, seed=3)  # (M, W, H) storage, read as (M, H, W)
    masks = storage.transpose(1, 2)
    assert encode_rle(masks).to_uncompressed() == official_amg.mask_to_rle_pytorch(masks.contiguous())
    large = torch.zeros(1, 3000, 2500, dtype=torch.bool)
    large[0, 1000:, 700:] = True  # counts above 2**20 need 5 characters
    expected = mask_utils.encode(np.asfortranarray(large[0].numpy().astype(np.uint8)))["counts"].decode()
    assert encode_rle(large).to_coco()[0]["counts"] == expected


@pytest.mark.parametrize("height, width", [(61, 47), (1, 1), (1, 9), (9, 1), (300, 200)])
def test_column_major_counts_of_row_major_masks_equal_pycocotools(height, width):
    masks = list(_random_masks(4, height, width, seed=height + width).numpy())
    masks += [np.zeros((height, width), bool), np.ones((height, width), bool)]
    corners = np.zeros((height, width), bool)
    corners[0, 0] = corners[-1, -1] = True  # runs at the first and the last pixel
    columns = np.zeros((height, width), bool)
    columns[:, ::2] = True  # a run that crosses from one column into the next
    masks += [corners, columns]
    for mask in masks:
        before = mask.copy()
        counts = column_major_counts(mask)
        assert counts.dtype == np.int64 and int(counts.sum()) == height * width
        assert counts.tolist() == encode_rle(torch.from_numpy(mask)[None]).to_uncompressed()[0]["counts"]
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
        assert mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)["counts"] == reference
        assert np.array_equal(mask, before)
    with pytest.raises(ValueError, match=r"\(H, W\) bool mask"):
        column_major_counts(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W\) bool mask"):
        column_major_counts(np.zeros((1, 2, 3), bool))


# ----------------------------------------------------------- small regions
def _official_cleanup(mask: np.ndarray, area: int) -> tuple[np.ndarray, bool]:
    filled, holes = official_amg.remove_small_regions(mask, area, "holes")
    cleaned, islands = official_amg.remove_small_regions(filled, area, "islands")
    return cleaned, holes or islands


@pytest.mark.parametrize("seed", range(2))
def test_small_region_removal_equals_opencv(seed):
    rng = np.random.default_rng(seed)
    for _ in range(30):
        count, height, width = rng.integers(1, 5), rng.integers(1, 48), rng.integers(1, 48)
        masks = rng.random((count, height, width)) < rng.random()
        area = int(rng.integers(1, 40))
        contiguous = torch.from_numpy(masks)
        transposed = contiguous.transpose(1, 2).contiguous().transpose(1, 2)  # column-major storage
        for layout in (contiguous, transposed):
            cleaned, changed = remove_small_regions_batch(layout, area)
            for index in range(count):
                expected, expected_changed = _official_cleanup(masks[index], area)
                assert np.array_equal(cleaned[index].numpy(), expected), (seed, index, area)
                assert bool(changed[index]) == expected_changed


def test_small_region_removal_keeps_opencv_first_largest_island():
    """All islands small and equally large: OpenCV keeps the first by 2x2 blocks in raster order."""
    mask = np.zeros((10, 10), dtype=bool)
    mask[1, 0] = mask[0, 3] = mask[5, 5] = True  # (1, 0) is in block (0, 0), (0, 3) in block (0, 1)
    for image in (mask, mask.T.copy()):
        expected, _ = official_amg.remove_small_regions(image, 2, "islands")
        ours, changed = our_amg.remove_small_regions(image, 2, "islands")
        assert changed and np.array_equal(ours, expected)
        filled, changed = our_amg.remove_small_regions(~image, 2, "holes")
        assert changed and np.array_equal(filled, official_amg.remove_small_regions(~image, 2, "holes")[0])
        unchanged, changed = our_amg.remove_small_regions(image, 1, "islands")
        assert unchanged is image and not changed
        storage = torch.from_numpy(image.T.copy())[None].transpose(1, 2)
        cleaned, _ = remove_small_regions_batch(storage, 2)
        assert np.array_equal(cleaned[0].numpy(), _official_cleanup(image, 2)[0])


def test_small_region_removal_on_a_spiral():
    """A long winding island (many union-find rounds) and the winding hole beside it."""
    size = 101
    spiral = np.zeros((size, size), dtype=bool)
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top <= bottom and left <= right:
        spiral[top, left : right + 1] = spiral[top : bottom + 1, right] = spiral[bottom, left : right + 1] = True
        spiral[top + 2 : bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
        if top <= bottom:
            spiral[top, left - 2 : left + 1] = True
    for area in (50, 3000, 6000):
        cleaned, changed = remove_small_regions_batch(torch.from_numpy(spiral)[None], area)
        expected, expected_changed = _official_cleanup(spiral, area)
        assert np.array_equal(cleaned[0].numpy(), expected) and bool(changed[0]) == expected_changed
