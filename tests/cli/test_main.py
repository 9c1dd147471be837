"""The promptseg command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from promptseg.cli import main
from tests._support import IMAGES_DIR


def test_info_reports_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for field in ("promptseg", "torch", "device", "extension_built", "kernels"):
        assert field in out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "promptseg", "info"], capture_output=True, text=True, check=True)
    assert "extension_built" in result.stdout


def test_predict_writes_masks_overlay_and_json(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "predict", str(IMAGES_DIR / "truck.jpg"), "--model", "vit_b",
            "--point", "500,375", "--point", "1100,600,0", "--box", "300,200,1400,900",
            "--multimask", "--out", str(out),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "RANDOM WEIGHTS" in captured.err
    result = json.loads((out / "result.json").read_text())
    assert result["image_size"] == [1200, 1800]
    assert result["prompt"]["labels"] == [1, 0]
    assert len(result["masks"]) == 3
    for record in result["masks"]:
        mask = np.array(Image.open(out / record["file"]))
        assert mask.shape == (1200, 1800)
        assert int((mask > 0).sum()) == record["area"]
        assert set(record) == {"file", "score", "area", "box_xyxy"}
    overlay = Image.open(out / "overlay.png")
    assert overlay.size == (1800, 1200) and overlay.mode == "RGB"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--box", "50,50,10,10"], "x0 <= x1"),
        (["--point", "1,2,5"], "label must be 1"),
        (["--point", "1"], "needs 2 or 3 numbers"),
        (["--box", "a,b,c,d"], "comma-separated numbers"),
    ],
)
def test_predict_rejects_bad_prompts(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(IMAGES_DIR / "dog.jpg"), "--model", "vit_tiny", "--out", str(tmp_path), *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_predict_missing_image(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "missing.jpg"), "--out", str(tmp_path)])
    assert "image not found" in capsys.readouterr().err
