"""Dataset-scale AMG throughput: the local engine against the Ray engine with 1, 2, ... workers.

On this CPU machine (no GPU; the bundled model on synthetic 256 px scenes)::

    python benchmarks/amg_ray.py                      # writes benchmarks/results/amg_ray_cpu.json

On N GPUs of one machine or a cluster (one GPU per actor; the local engine uses one GPU)::

    ray start --head --num-gpus 8                     # or join a cluster: RAY_ADDRESS / --address
    python benchmarks/amg_ray.py --source /data/images --model vit_h --checkpoint sam_vit_h_4b8939.pth \\
        --points-per-side 32 --workers 1 2 4 8 --gpus-per-worker 1 --address auto --results-name amg_ray_8xh100

Each configuration runs twice on fresh output folders: on 1 image (start-up: Ray's actors, model
loading, the first call) and on all N images. ``images_per_s`` is N over the whole run;
``steady_images_per_s`` is (N - 1) over the difference of the two runs, the throughput once
started. ``overhead_vs_local`` compares the steady throughput of the 1-worker Ray run to the local
engine's (the issue's target on one GPU: <= 10%).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import write_results  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="folder of images (default: --images synthetic scenes)")
    parser.add_argument("--images", type=int, default=12, help="synthetic 256 px scenes when no --source")
    parser.add_argument("--model", default=None, help="model type (default: the bundled vit_tiny)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--points-per-side", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gpus-per-worker", type=float, default=None, help="default: 1 with GPUs, else 0")
    parser.add_argument("--cpus-per-worker", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--address", default=None, help="Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--results-name", default="amg_ray_cpu")
    return parser.parse_args(argv)


def synthetic_folder(count: int, folder: Path) -> Path:
    from promptseg.data.synthetic import generate_scene

    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        Image.fromarray(generate_scene(seed, size=256).image).save(folder / f"scene_{seed:03d}.png")
    return folder


def subset(source: Path, count: int, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in source.iterdir() if p.is_file())[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def local_seconds(images: Path, out: Path, args: argparse.Namespace) -> float:
    """Wall time of ``promptseg amg`` (local engine) in this process, model loading included."""
    import promptseg.cli

    arguments = ["amg", str(images), "--out", str(out), "--points-per-side", str(args.points_per_side),
                 "--dtype", args.dtype]
    arguments += ["--model", args.model] if args.model else []
    arguments += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    start = time.perf_counter()
    assert promptseg.cli.main(arguments) == 0
    return time.perf_counter() - start


def ray_seconds(images: Path, out: Path, workers: int, args: argparse.Namespace) -> float:
    """Wall time of ``generate_masks`` on the connected Ray, actor start-up included."""
    from promptseg.distributed import generate_masks

    start = time.perf_counter()
    generate_masks(
        images, out, model=args.model, checkpoint=args.checkpoint, dtype=args.dtype,
        points_per_side=args.points_per_side, workers=workers, gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker, batch_size=args.batch_size, address=args.address,
    )
    return time.perf_counter() - start


def row(name: str, one: float, many: float, count: int) -> dict:
    steady = (count - 1) / (many - one) if many > one else float("nan")
    print(f"{name}: 1 image {one:.1f} s, {count} images {many:.1f} s -> {count / many:.3f} images/s, "
          f"steady {steady:.3f} images/s")
    return {"engine": name, "seconds_1_image": one, "seconds_all": many, "images_per_s": count / many,
            "steady_images_per_s": steady}


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    import ray

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        images = args.source or synthetic_folder(args.images, scratch / "scenes")
        count = len([p for p in images.iterdir() if p.is_file()])
        one = subset(images, 1, scratch / "one")
        rows = [row("local", local_seconds(one, scratch / "l1", args), local_seconds(images, scratch / "ln", args),
                    count)]
        if args.address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=args.address)
        else:
            ray.init(num_cpus=max(os.cpu_count() or 1, max(args.workers) + 1), include_dashboard=False,
                     object_store_memory=512 * 1024**2, log_to_driver=False)
        try:
            for workers in args.workers:
                rows.append(row(
                    f"ray x{workers}",
                    ray_seconds(one, scratch / f"r{workers}_1", workers, args),
                    ray_seconds(images, scratch / f"r{workers}_n", workers, args),
                    count,
                ))
            cluster = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        finally:
            ray.shutdown()
    local = rows[0]["steady_images_per_s"]
    for entry in rows[1:]:
        if entry["engine"] == "ray x1":
            entry["overhead_vs_local"] = 1 - entry["steady_images_per_s"] / local
    path = write_results(args.results_name, {
        "benchmark": "amg_ray",
        "images": count,
        "source": str(args.source) if args.source else f"{count} synthetic 256 px scenes",
        "model": args.model or "bundled vit_tiny",
        "points_per_side": args.points_per_side,
        "batch_size": args.batch_size,
        "gpus_per_worker": args.gpus_per_worker,
        "cpus_per_worker": args.cpus_per_worker,
        "cluster": cluster,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "rows": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
