"""The ``promptseg amg`` command: COCO files, overlays, per-mask PNGs and records, resuming, and
missing input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from promptseg.build import construct_sam
from tests._support import TINY, load_image

mask_utils = pytest.importorskip("pycocotools.mask")
COCO = pytest.importorskip("pycocotools.coco").COCO


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
