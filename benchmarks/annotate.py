"""Annotation server: the round trip of a click (HTTP request to RLE response) against the decode time the
server reports, so that the server's own overhead (round trip minus decode) is measured at the median.

    python benchmarks/annotate.py                                   # bundled vit_tiny on this CPU
    python benchmarks/annotate.py --model vit_h --checkpoint sam_vit_h_4b8939.pth --image tests/data/images/truck.jpg
    python benchmarks/annotate.py --model vit_h --image tests/data/images/truck.jpg   # RANDOM weights: latency only

Without --checkpoint, --model builds the model with random weights (the server prints a warning, the
results record ``"random_weights": true``): the decode time holds, but the masks are noise, whose RLEs
are far longer than real masks' (truck.jpg, 1800x1200, on the 2-core development CPU: about 0.4-0.5 MB
per response against 10-15 kB with the bundled model), which inflates the service and HTTP parts. Each
row records the median response size, so a run with real weights on the same image tells them apart.

The server is the ``promptseg annotate`` command in its own process (as for a browser: a client in the
same process would share the GIL with the server and add its switch interval to every round trip); the
client keeps one HTTP/1.1 connection to 127.0.0.1 open, as a browser does. Each click is timed on the wall clock around request and response
(an HTTP round trip cannot be bracketed by CUDA events); ``http_floor`` is the round trip of a request
that does no model work (GET /api/status), the floor set by the machine's scheduling; ``decode_ms`` is the server's own timing of
``SamPredictor.predict`` (prompt encoding, decoding, up-sampling to full size, copy to the host), which
is synchronous on a GPU. Two kinds of click: a first click (one point, 3 candidates), and a refinement
click (two points plus the previous logits through ``mask_input``). Targets: overhead <= 5 ms at the
median; ViT-H on an H100, round trip <= 10 ms. Writes benchmarks/results/annotate_<device>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder import results_name  # noqa: E402
from harness import environment, write_results  # noqa: E402

OVERHEAD_TARGET_MS = 5.0
VIT_H_ROUND_TRIP_TARGET_MS = 10.0


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    from promptseg.cli.common import add_model_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--image", type=Path, help="image to click on (default: synthetic scene 1, 256x256)")
    parser.add_argument("--clicks", type=int, default=60, help="timed clicks per kind (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed clicks first (default 10)")
    parser.add_argument("--results-name", help="results file name under benchmarks/results/ (default annotate_<device>)")
    return parser.parse_args(argv)


def serve(image_dir: Path, out: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    """Start ``promptseg annotate`` on a free loopback port with the model arguments; wait until it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "promptseg", "annotate", str(image_dir), "--out", str(out), "--port", str(port),
               "--no-prefetch", "--dtype", args.dtype]
    for flag, value in (("--model", args.model), ("--checkpoint", args.checkpoint), ("--device", args.device)):
        if value is not None:
            command += [flag, str(value)]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"promptseg annotate exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("promptseg annotate did not start within 600 s")


def stop(server: subprocess.Popen) -> None:
    """Stop the server: SIGTERM, then SIGKILL after 10 s. uvicorn's graceful shutdown waits for the request
    in flight, and an image embedding (minutes for ViT-H on a CPU) would keep it, and the memory, alive."""
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=60)


def click(connection: http.client.HTTPConnection, body: dict) -> tuple[float, dict]:
    """(round trip ms, parsed response) of one predict request on the open connection; the response's
    size in bytes is added to it as ``response_bytes``."""
    payload = json.dumps(body).encode()
    start = time.perf_counter()
    connection.request("POST", "/api/images/1/predict", payload, {"Content-Type": "application/json"})
    response = connection.getresponse()
    raw = response.read()
    result = json.loads(raw)
    elapsed = 1e3 * (time.perf_counter() - start)
    if response.status != 200:
        raise RuntimeError(f"predict failed ({response.status}): {result}")
    result["response_bytes"] = len(raw)
    return elapsed, result


def summary(round_trips: list[float], decodes: list[float], servers: list[float], sizes: list[int]) -> dict:
    """Medians (and p90s) of the round trip, the decode, the overhead (round trip - decode) and its two
    parts: inside the service (checks, cache, RLE, tokens: server - decode) and HTTP (round trip - server);
    the median response size."""
    overheads = [r - d for r, d in zip(round_trips, decodes)]
    return {
        "clicks": len(round_trips),
        "round_trip_ms_median": statistics.median(round_trips),
        "decode_ms_median": statistics.median(decodes),
        "overhead_ms_median": statistics.median(overheads),
        "overhead_ms_p90": float(np.percentile(overheads, 90)),
        "service_ms_median": statistics.median([s - d for s, d in zip(servers, decodes)]),
        "http_ms_median": statistics.median([r - s for r, s in zip(round_trips, servers)]),
        "round_trip_ms_p90": float(np.percentile(round_trips, 90)),
        "response_bytes_median": statistics.median(sizes),
    }


def main(argv: Optional[list[str]] = None) -> None:
    from promptseg.data.synthetic import generate_scene

    args = parse_args(argv)
    # Stopped by SIGTERM (a time limit, e.g. tests/gpu/session.sh's): exit through the `finally` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    random_weights = args.model is not None and args.checkpoint is None
    if random_weights:
        print(f"{args.model} with RANDOM weights (no --checkpoint): the decode time holds; the masks are noise, "
              "whose long RLEs inflate the overhead")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "images").mkdir()
        if args.image is None:
            Image.fromarray(generate_scene(1).image).save(folder / "images" / "scene.png")
            image_name = "synthetic scene 1 (256x256)"
        else:
            Image.open(args.image).convert("RGB").save(folder / "images" / "image.png")
            image_name = str(args.image)
        server, port = serve(folder / "images", folder / "out.json", args)
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            connection.request("GET", "/api/images")
            response = connection.getresponse()
            info = json.loads(response.read())["images"][0]
            _, first = click(connection, {"points": [[1.0, 1.0]], "labels": [1]})  # embeds the image
            print(f"image embedded in {first['encode_ms']:.0f} ms")

            def random_point() -> list[float]:
                return [float(rng.uniform(0, info["width"])), float(rng.uniform(0, info["height"]))]

            floor = []
            for index in range(args.warmup + args.clicks):
                start = time.perf_counter()
                connection.request("GET", "/api/status")
                connection.getresponse().read()
                if index >= args.warmup:
                    floor.append(1e3 * (time.perf_counter() - start))
            print(f"http floor (GET /api/status, no model work): {statistics.median(floor):.2f} ms")
            rows = {}
            for kind in ("first_click", "refinement_click"):
                round_trips, decodes, servers, sizes = [], [], [], []
                for index in range(args.warmup + args.clicks):
                    point = random_point()
                    elapsed, result = click(connection, {"points": [point], "labels": [1], "multimask": True})
                    if kind == "refinement_click":
                        body = {"points": [point, random_point()], "labels": [1, 0], "mask_input": result["mask_input"],
                                "multimask": True}
                        elapsed, result = click(connection, body)
                    if index >= args.warmup:
                        round_trips.append(elapsed)
                        decodes.append(result["decode_ms"])
                        servers.append(result["server_ms"])
                        sizes.append(result["response_bytes"])
                rows[kind] = summary(round_trips, decodes, servers, sizes)
                row = rows[kind]
                print(
                    f"{kind:17s} round trip {row['round_trip_ms_median']:7.2f} ms  decode {row['decode_ms_median']:7.2f} ms"
                    f"  overhead {row['overhead_ms_median']:5.2f} ms (p90 {row['overhead_ms_p90']:.2f}; service "
                    f"{row['service_ms_median']:.2f}, http {row['http_ms_median']:.2f})"
                )
            connection.close()
        finally:
            stop(server)

    on_gpu = torch.cuda.is_available() and args.device != "cpu"
    device = environment()["device"] if on_gpu else "cpu"
    payload = {
        "benchmark": "annotate click round trip",
        "model": {"model": args.model or "bundled vit_tiny", "checkpoint": str(args.checkpoint) if args.checkpoint else None,
                  "weights": "random" if random_weights else ("checkpoint" if args.checkpoint else "bundled"),
                  "dtype": args.dtype, "device": "cuda" if on_gpu else "cpu"},
        "random_weights": random_weights,
        "image": image_name,
        "image_size": [info["height"], info["width"]],
        "embedding_ms": first["encode_ms"],
        "http_floor_ms_median": statistics.median(floor),
        "cpu_threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "targets": {"overhead_ms_median": OVERHEAD_TARGET_MS, "vit_h_h100_round_trip_ms": VIT_H_ROUND_TRIP_TARGET_MS},
        "overhead_target_met": all(r["overhead_ms_median"] <= OVERHEAD_TARGET_MS for r in rows.values()),
        "rows": rows,
    }
    name = args.results_name or ("annotate_cpu" if device == "cpu" else results_name("annotate"))
    print(f"wrote {write_results(name, payload)}")


if __name__ == "__main__":
    main()
