"""find_instances and `promptseg find` (issue 12): every instance of a described concept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from promptseg import SamAutomaticMaskGenerator, find_instances
from promptseg.bundled import build_bundled_sam
from promptseg.cli import main
from promptseg.data.concepts import CONCEPT_HELD_OUT_SEED, generate_concept_scene
from promptseg.find import BUNDLED_PROPOSALS
from promptseg.text import load_concept_encoder
from promptseg.train.concepts_eval import concept_queries, match_instances

FIND_SCENES = 16


@pytest.fixture(scope="module")
def generator() -> SamAutomaticMaskGenerator:
    return SamAutomaticMaskGenerator(build_bundled_sam(), **BUNDLED_PROPOSALS)


@pytest.fixture(scope="module")
def encoder():
    return load_concept_encoder("bundled")


def test_find_instances_records(generator, encoder):
    scene = generate_concept_scene((CONCEPT_HELD_OUT_SEED, 100))
    image = scene.image.copy()
    query = scene.caption(0)
    found = find_instances(image, query, sam=generator, concept_encoder=encoder)
    np.testing.assert_array_equal(image, scene.image)  # the caller's image is untouched
    for record in found:
        assert {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box", "score"} <= set(record)
        assert record["segmentation"].shape == image.shape[:2] and record["segmentation"].dtype == bool
        assert record["score"] >= encoder.default_threshold
    assert [r["score"] for r in found] == sorted((r["score"] for r in found), reverse=True)
    assert find_instances(image, query, sam=generator, concept_encoder=encoder, threshold=1.01) == []


def test_find_instances_bad_input(generator, encoder):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(TypeError, match="one string"):
        find_instances(image, ["red star"], sam=generator, concept_encoder=encoder)
    with pytest.raises(ValueError, match="non-empty"):
        find_instances(image, " ", sam=generator, concept_encoder=encoder)
    with pytest.raises(TypeError, match="image must"):
        find_instances(image.astype(np.float32), "red star", sam=generator, concept_encoder=encoder)
    with pytest.raises(TypeError, match="concept_encoder must be"):
        find_instances(image, "red star", sam=generator, concept_encoder="clip")
    with pytest.raises(ValueError, match="output_mode='binary_mask'"):
        find_instances(image, "red star", sam=SamAutomaticMaskGenerator(generator.predictor.model, output_mode="coco_rle"),
                       concept_encoder=encoder)


def test_find_instances_recall_and_precision_on_held_out_scenes(generator, encoder):
    """Acceptance: recall >= 0.7 at IoU 0.5 and precision >= 0.6 for "<colour> <shape>" queries on held-out scenes."""
    rng = np.random.default_rng(0)
    true_positives = predicted = truth = 0
    for index in range(FIND_SCENES):
        scene = generate_concept_scene((CONCEPT_HELD_OUT_SEED, index))
        query = concept_queries(scene, rng)
        wanted = scene.masks[scene.matching(query)]
        found = find_instances(scene.image, query, sam=generator, concept_encoder=encoder)
        masks = np.stack([r["segmentation"] for r in found]) if found else np.zeros((0, *scene.image.shape[:2]), bool)
        true_positives += match_instances(masks, wanted)
        predicted += len(found)
        truth += len(wanted)
    recall, precision = true_positives / truth, true_positives / max(predicted, 1)
    print(f"\nfind_instances on {FIND_SCENES} held-out scenes: recall {recall:.3f} precision {precision:.3f} "
          f"({true_positives} matched, {predicted} found, {truth} wanted)")
    assert recall >= 0.7 and precision >= 0.6


def test_find_cli_image_and_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(2):
        Image.fromarray(generate_concept_scene((CONCEPT_HELD_OUT_SEED, 200 + index)).image).save(folder / f"scene{index}.png")
    single = tmp_path / "single"
    assert main(["find", str(folder / "scene0.png"), "--text", "red star", "--out", str(single), "--threshold", "-1"]) == 0
    result = json.loads((single / "result.json").read_text())
    assert result["query"] == "red star" and (single / "overlay.png").is_file()
    assert len(result["masks"]) > 0 and all((single / m["file"]).is_file() for m in result["masks"])
    out = tmp_path / "folder"
    assert main(["find", str(folder), "--text", "blue circle", "--out", str(out), "--threshold", "-1"]) == 0
    coco = json.loads((out / "annotations.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == ["scene0.png", "scene1.png"]
    assert coco["categories"][0]["name"] == "blue circle" and len(coco["annotations"]) > 0
    results = json.loads((out / "results.json").read_text())
    assert len(results) == len(coco["annotations"]) and all("score" in r for r in results)
    assert (out / "scene1.png" / "overlay.png").is_file()
    with pytest.raises(SystemExit):
        main(["find", str(folder), "--text", "red star", "--out", str(out), "--clip-model", "ViT-B-16"])
