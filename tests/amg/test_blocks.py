"""Automatic mask generation: the building blocks against the official ones and pycocotools,
generate_batch, bad input, and the ``promptseg amg`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import promptseg
import promptseg.utils.amg as our_amg
from promptseg.amg.regions import remove_small_regions_batch
from promptseg.amg.rle import encode_rle
from promptseg.build import construct_sam
from promptseg.io.rle import column_major_counts
from tests._support import OFFICIAL_MISSING, TINY, load_image

mask_utils = pytest.importorskip("pycocotools.mask")
COCO = pytest.importorskip("pycocotools.coco").COCO
official_amg = pytest.importorskip("segment_anything.utils.amg", reason=OFFICIAL_MISSING)

SMALL = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


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


# --------------------------------------------------------------- generator
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return construct_sam(TINY)


def _assert_same_records(expected: list[dict], actual: list[dict]) -> None:
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert np.array_equal(a["segmentation"], b["segmentation"])
        a_rest, b_rest = ({k: v for k, v in r.items() if k != "segmentation"} for r in (a, b))
        assert a_rest == b_rest


def test_generate_batch_equals_generate_per_image(tiny_model, images):
    """Crops of several images share encoder batches (batch_size=3 with 5 crops per image)."""
    settings = {**SMALL, "points_per_side": 3, "crop_n_layers": 1, "box_nms_thresh": 1.0}
    generator = promptseg.SamAutomaticMaskGenerator(tiny_model, **settings)
    batch = [images["dog.jpg"][:320, :480], images["groceries.jpg"][:300, :450]]
    results = generator.generate_batch(batch, batch_size=3)
    assert len(results) == 2 and all(len(records) > 0 for records in results)
    for image, records in zip(batch, results):
        _assert_same_records(generator.generate(image), records)
    assert generator.generate_batch([]) == []


def _by_score(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda record: record["predicted_iou"])


def test_fused_cuda_branches_match_module_path(monkeypatch, tiny_model, images):
    """The branches taken on a CUDA bf16 model with kernels, run here on their PyTorch references:
    decoding through the fused path's image table, and measuring masks with three post-processing
    passes. They must give the records of the model's own modules."""
    import promptseg.decoders.base as decoder_base

    from promptseg.decoders import FusedDecoder

    generator = promptseg.SamAutomaticMaskGenerator(tiny_model, **SMALL, box_nms_thresh=1.0, points_per_batch=7)
    image = images["groceries.jpg"][:300, :450]
    expected = generator.generate(image)
    fused = promptseg.SamAutomaticMaskGenerator(
        tiny_model, **SMALL, box_nms_thresh=1.0, points_per_batch=7, decoder=FusedDecoder(tiny_model)
    )
    monkeypatch.setattr(decoder_base, "kernel_available", lambda name, *tensors, **kwargs: name == "mask_postprocess")
    actual = fused.generate(image)
    assert len(actual) == len(expected) == 4 * 4 * 3
    for a, b in zip(_by_score(expected), _by_score(actual)):
        assert (a["segmentation"] != b["segmentation"]).mean() < 1e-3
        assert abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-5
        assert abs(np.nan_to_num(a["stability_score"] - b["stability_score"])) < 1e-3


def test_inputs_are_not_modified(tiny_model, images):
    image = images["dog.jpg"].copy()
    grids = [np.array([[0.25, 0.5], [0.75, 0.5]], dtype=np.float32)]
    grid_copy = grids[0].copy()
    generator = promptseg.SamAutomaticMaskGenerator(
        tiny_model, points_per_side=None, point_grids=grids, output_mode="coco_rle"
    )
    records = generator.generate(image)
    assert np.array_equal(image, images["dog.jpg"]) and np.array_equal(grids[0], grid_copy)
    assert {tuple(r["point_coords"][0]) for r in records} <= {(200.0, 267.0), (600.0, 267.0)}


def test_bfloat16_model_runs(images):
    """The official generator cannot run a bf16 model (numpy has no bfloat16); ours can."""
    model = construct_sam(TINY).to(torch.bfloat16)
    records = promptseg.SamAutomaticMaskGenerator(model, **SMALL).generate(images["dog.jpg"][:200, :300])
    assert records and all(isinstance(r["predicted_iou"], float) for r in records)


@pytest.mark.parametrize(
    "settings, error, pattern",
    [
        ({"output_mode": "polygons"}, ValueError, r"output_mode must be one of .* got 'polygons'"),
        ({"point_grids": [np.zeros((4, 2))]}, ValueError, "exactly one of points_per_side and point_grids"),
        ({"points_per_side": None}, ValueError, "exactly one of points_per_side and point_grids"),
        ({"points_per_side": None, "point_grids": [np.zeros((4, 3))]}, ValueError, r"point_grids\[0\] must have shape"),
        ({"points_per_side": None, "point_grids": [np.zeros((4, 2))], "crop_n_layers": 1}, ValueError, "one grid per"),
        ({"points_per_side": 2, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2}, ValueError, "0 points per"),
        ({"points_per_batch": 0}, ValueError, "points_per_batch must be >= 1, got 0"),
        ({"points_per_side": 8.0}, TypeError, "points_per_side must be an int, got float"),
        ({"pred_iou_thresh": "high"}, TypeError, "pred_iou_thresh must be a real number, got str"),
    ],
)
def test_bad_settings(tiny_model, settings, error, pattern):
    with pytest.raises(error, match=pattern):
        promptseg.SamAutomaticMaskGenerator(tiny_model, **settings)


@pytest.mark.parametrize(
    "image, error, pattern",
    [
        (np.zeros((20, 30), dtype=np.uint8), ValueError, r"must have shape \(H, W, 3\), got \(20, 30\)"),
        (np.zeros((20, 30, 3), dtype=np.float32), TypeError, "dtype uint8 .* got float32"),
        ([[0, 0, 0]], TypeError, "numpy array .* got list"),
    ],
)
def test_bad_images(tiny_model, image, error, pattern):
    generator = promptseg.SamAutomaticMaskGenerator(tiny_model, **SMALL)
    with pytest.raises(error, match=pattern):
        generator.generate(image)
    with pytest.raises(error, match=r"images\[1\]: .*" + pattern):
        generator.generate_batch([np.zeros((20, 30, 3), dtype=np.uint8), image])


def test_generate_batch_rejects_one_image(tiny_model):
    generator = promptseg.SamAutomaticMaskGenerator(tiny_model, **SMALL)
    with pytest.raises(TypeError, match="sequence of .* use generate for one image"):
        generator.generate_batch(np.zeros((20, 30, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        generator.generate_batch([], batch_size=0)


# --------------------------------------------------------------------- CLI
@pytest.fixture
def amg_main(monkeypatch):
    """``promptseg.cli.main`` with vit_b built as the tiny model."""
    import promptseg.cli
    import promptseg.cli.common

    monkeypatch.setattr(promptseg.cli.common, "build_sam", lambda *args, **kwargs: construct_sam(TINY))
    generated = []
    original = promptseg.SamAutomaticMaskGenerator.generate

    def counting_generate(self, image):
        generated.append(image.shape)
        return original(self, image)

    monkeypatch.setattr(promptseg.SamAutomaticMaskGenerator, "generate", counting_generate)
    return promptseg.cli.main, generated


def _small_image(folder, name: str, size: tuple[int, int]) -> None:
    Image.fromarray(load_image(name)).resize(size).save(folder / name)


def test_cli_writes_coco_files_overlays_and_resumes(tmp_path, capsys, amg_main):
    main, generated = amg_main
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    _small_image(images, "dog.jpg", (160, 107))
    _small_image(images, "groceries.jpg", (120, 80))
    arguments = ["amg", str(images), "--model", "vit_b", "--out", str(out), "--points-per-side", "4",
                 "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--format", "png"]
    assert main(arguments) == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().err
    assert generated == [(107, 160, 3), (80, 120, 3)]

    dataset = COCO(str(out / "annotations.json"))
    assert sorted(image["file_name"] for image in dataset.dataset["images"]) == ["dog.jpg", "groceries.jpg"]
    results = dataset.loadRes(str(out / "results.json"))
    assert len(results.getAnnIds()) == len(dataset.getAnnIds()) > 0
    for annotation in dataset.loadAnns(dataset.getAnnIds()):
        image = dataset.loadImgs(annotation["image_id"])[0]
        assert dataset.annToMask(annotation).shape == (image["height"], image["width"])
        assert int(dataset.annToMask(annotation).sum()) == annotation["area"]
    for name, size in (("dog.jpg", (160, 107)), ("groceries.jpg", (120, 80))):
        assert Image.open(out / "overlays" / f"{name}.png").size == size
        record = json.loads((out / "records" / f"{name}.json").read_text())
        pngs = sorted((out / "masks" / name).glob("*.png"))
        assert len(pngs) == len(record["masks"]) > 0
        first = np.array(Image.open(pngs[0])) > 0
        assert np.array_equal(first, mask_utils.decode(record["masks"][0]["segmentation"]).astype(bool))

    # Re-run: nothing to do. Then a new image: only it is segmented.
    assert main(arguments) == 0
    assert "2 already done" in capsys.readouterr().out and len(generated) == 2
    _small_image(images, "truck.jpg", (150, 100))
    assert main(arguments) == 0
    assert generated[2:] == [(100, 150, 3)]
    assert len(COCO(str(out / "annotations.json")).getImgIds()) == 3


def test_cli_rejects_missing_input(tmp_path, capsys, amg_main):
    main, _ = amg_main
    with pytest.raises(SystemExit):
        main(["amg", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert "image or folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["amg", str(tmp_path), "--out", str(tmp_path / "out")])
    assert "no images" in capsys.readouterr().err


def test_postprocess_small_regions_equals_the_official_static_method():
    """``SamAutomaticMaskGenerator.postprocess_small_regions`` on MaskData, as the official one."""
    from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator
    from segment_anything.utils.amg import MaskData as OfficialMaskData
    from segment_anything.utils.amg import batched_mask_to_box, mask_to_rle_pytorch

    from promptseg.amg.batching import MaskData

    generator = torch.Generator().manual_seed(3)
    masks = torch.zeros(6, 40, 50, dtype=torch.bool)
    corners = torch.randint(0, 20, (6, 2), generator=generator).tolist()
    for index, (x0, y0) in enumerate(corners):
        masks[index, y0 : y0 + 15, x0 : x0 + 20] = True
    masks[1, 35:37, 45:47] = True  # a small island
    masks[2, corners[2][1] + 5, corners[2][0] + 5] = False  # a small hole
    masks[3] = masks[2]  # a duplicate
    rles, boxes = mask_to_rle_pytorch(masks), batched_mask_to_box(masks)
    official = OfficialGenerator.postprocess_small_regions(OfficialMaskData(rles=list(rles), boxes=boxes.clone()), 10, 0.7)
    ours = promptseg.SamAutomaticMaskGenerator.postprocess_small_regions(MaskData(rles=list(rles), boxes=boxes.clone()), 10, 0.7)
    assert ours["rles"] == official["rles"] and torch.equal(ours["boxes"], official["boxes"])
