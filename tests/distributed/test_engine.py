"""Dataset-scale AMG on Ray (``promptseg amg --engine ray``, ``promptseg.distributed.generate_masks``),
on a local Ray with the bundled model: the local engine's records, a merged COCO file, resume after
an interrupted run, a worker that dies, and a corrupt image.

One Ray (4 logical CPUs, a 256 MB object store) is shared by the module and shut down at its end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
COCO = pytest.importorskip("pycocotools.coco").COCO

import promptseg.cli  # noqa: E402
from promptseg.data.synthetic import generate_scene  # noqa: E402
from promptseg.distributed import FaultInjection, generate_masks  # noqa: E402

SCENES = 12
# A sparse grid and low thresholds: 14 masks over the 12 scenes, and about 1 s a scene on 2 cores.
OPTIONS = {"points_per_side": 4, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
CLI_OPTIONS = ["--points-per-side", "4", "--pred-iou-thresh", "0.5", "--stability-score-thresh", "0.8"]
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def ray_cluster() -> str:
    """A local Ray for the module; its address."""
    context = ray.init(
        num_cpus=4, include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False,
        logging_level="WARNING",
    )
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """12 synthetic 256 px scenes as PNGs."""
    folder = tmp_path_factory.mktemp("scenes")
    for seed in range(SCENES):
        Image.fromarray(generate_scene(seed, size=256).image).save(folder / f"scene_{seed:02d}.png")
    return folder


def _timed_cli(arguments: list[str], label: str) -> None:
    start = time.perf_counter()
    assert promptseg.cli.main(arguments) == 0
    print(f"{label}: {time.perf_counter() - start:.1f} s")


@pytest.fixture(scope="module")
def local_out(scenes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    _timed_cli(["amg", str(scenes), "--out", str(out), *CLI_OPTIONS], f"local engine, {SCENES} scenes")
    return out


@pytest.fixture(scope="module")
def ray_out(ray_cluster, scenes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray")
    _timed_cli(
        ["amg", str(scenes), "--out", str(out), "--engine", "ray", "--workers", "2", "--batch-size", "1",
         *CLI_OPTIONS],
        f"ray engine, 2 workers, {SCENES} scenes",
    )
    return out


def _record(out: Path, name: str) -> dict:
    return json.loads((out / "records" / f"{name}.json").read_text())


def _assert_same_record(expected: dict, actual: dict) -> None:
    """Same masks (RLE), boxes, points and settings; scores within float tolerance."""
    assert {k: v for k, v in expected.items() if k != "masks"} == {k: v for k, v in actual.items() if k != "masks"}
    assert len(expected["masks"]) == len(actual["masks"])
    for a, b in zip(expected["masks"], actual["masks"]):
        assert a["segmentation"] == b["segmentation"]
        for key in a:
            if key in ("predicted_iou", "stability_score"):
                assert abs(a[key] - b[key]) <= SCORE_TOLERANCE, (key, a[key], b[key])
            elif key != "segmentation":
                assert a[key] == b[key], key


def _files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


# ------------------------------------------------------------------ parity
def test_ray_engine_writes_the_local_engine_records(local_out, ray_out, scenes):
    names = sorted(p.name for p in scenes.iterdir())
    assert _files(ray_out) == _files(local_out)  # failures.jsonl included: both engines list failures
    assert (local_out / "failures.jsonl").read_text() == ""
    masks = 0
    for name in names:
        expected, actual = _record(local_out, name), _record(ray_out, name)
        _assert_same_record(expected, actual)
        masks += len(actual["masks"])
        # Same masks, so the same overlay, byte for byte.
        overlay = Path("overlays") / f"{name}.png"
        assert (ray_out / overlay).read_bytes() == (local_out / overlay).read_bytes()
    print(f"{len(names)} scenes, {masks} masks, identical between the engines")
    assert masks >= len(names)
    assert (ray_out / "failures.jsonl").read_text() == ""
    assert not list(ray_out.rglob("*.tmp"))


def test_merged_coco_file_loads_in_pycocotools(local_out, ray_out):
    dataset = COCO(str(ray_out / "annotations.json"))
    assert [image["file_name"] for image in dataset.dataset["images"]] == [f"scene_{s:02d}.png" for s in range(SCENES)]
    results = dataset.loadRes(str(ray_out / "results.json"))
    assert len(results.getAnnIds()) == len(dataset.getAnnIds()) > 0
    for annotation in dataset.loadAnns(dataset.getAnnIds()):
        mask = dataset.annToMask(annotation)
        assert mask.shape == (256, 256) and int(mask.sum()) == annotation["area"]
    local = json.loads((local_out / "annotations.json").read_text())
    ours = dataset.dataset["annotations"]
    assert [a["segmentation"] for a in local["annotations"]] == [a["segmentation"] for a in ours]


# ----------------------------------------------------------- resume, faults
def _subset(scenes: Path, folder: Path, seeds: range) -> list[str]:
    folder.mkdir()
    for seed in seeds:
        shutil.copy(scenes / f"scene_{seed:02d}.png", folder / f"scene_{seed:02d}.png")
    return [f"scene_{seed:02d}.png" for seed in seeds]


def test_killed_driver_resumes_without_redoing_and_equals_a_clean_run(ray_cluster, ray_out, scenes, tmp_path):
    """``promptseg amg --engine ray --address`` joins this module's Ray in a subprocess, which is
    killed (SIGKILL) once it has written 2 records; the re-run does only the rest."""
    names = _subset(scenes, tmp_path / "images", range(5))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "promptseg", "amg", str(tmp_path / "images"), "--out", str(out),
               "--engine", "ray", "--address", ray_cluster, "--workers", "1", *CLI_OPTIONS]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while len(list((out / "records").glob("*.json"))) < 2:
            assert driver.poll() is None, "the driver ended before it could be killed"
            assert time.monotonic() < deadline, "no 2 records within 240 s"
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait()
    done = {p.name[: -len(".json")]: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    print(f"killed driver after {len(done)} of {len(names)} records")
    assert 2 <= len(done) < len(names)

    summary = generate_masks(tmp_path / "images", out, **OPTIONS, workers=1)
    print(summary.line())
    assert (summary.already_done, summary.segmented, summary.failures) == (len(done), len(names) - len(done), 0)
    for name, mtime in done.items():
        assert (out / "records" / f"{name}.json").stat().st_mtime_ns == mtime, f"{name} was redone"
    for name in names:
        _assert_same_record(_record(ray_out, name), _record(out, name))
        assert (out / "overlays" / f"{name}.png").read_bytes() == (ray_out / "overlays" / f"{name}.png").read_bytes()
    assert len(COCO(str(out / "annotations.json")).getImgIds()) == len(names)
    assert not list(out.rglob("*.tmp"))


def test_dead_worker_is_restarted_and_a_corrupt_image_is_listed(ray_cluster, ray_out, scenes, tmp_path):
    """Through the URI route (``local://``: Ray Data lists and reads the folder itself)."""
    names = _subset(scenes, tmp_path / "images", range(5, 8))
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out, marker = tmp_path / "out", tmp_path / "died"
    # Batches of 2 images (encoded together, good and broken mixed). The actor's process exits
    # (os._exit) on its second batch; Ray restarts it and retries that batch.
    summary = generate_masks(f"local://{tmp_path / 'images'}", out, **OPTIONS, workers=1, batch_size=2,
                             fault_injection=FaultInjection(after_images=1, marker=str(marker)))
    print(summary.line())
    assert marker.exists(), "the injected worker death did not happen"
    assert (summary.images, summary.segmented, summary.failures) == (4, 3, 1)
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 1 and failures[0]["file_name"] == "broken.png" and failures[0]["stage"] == "decode"
    assert "cannot identify image file" in failures[0]["error"]
    for name in names:
        _assert_same_record(_record(ray_out, name), _record(out, name))
    assert not (out / "records" / "broken.png.json").exists()
    assert [i["file_name"] for i in COCO(str(out / "annotations.json")).dataset["images"]] == names
