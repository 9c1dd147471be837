"""The CPU paths side by side (issue 25): the official segment_anything, promptseg's default and each
of its CPU engines, and ONNX Runtime fp32 / int8 run directly on promptseg's own export (the anchor),
same weights, same run, repetitions interleaved across paths, medians reported.

    python benchmarks/cpu.py                      # vit_b (random weights) and the bundled model
    python benchmarks/cpu.py --quick              # the bundled model, 1 repetition: checks that it runs
    python benchmarks/cpu.py --profile vit_b      # torch-profiler op shares of the encoder (NOTES.md)
    python benchmarks/cpu.py --floor              # each encoder's float32 arithmetic against this CPU's GEMM rate
    python benchmarks/cpu.py --keep-freed-memory  # every path with promptseg.allocator's policy (own results file)

Measures per path: ``set_image`` (one photo, or a held-out synthetic scene for the bundled model),
a click (``predict``, one point, 3 masks; the median of 5, the first right after set_image), 64 single-click prompts (``predict_many``; the official
package: 64 ``predict`` calls) and automatic mask generation on a 16x16 grid with every candidate
kept (random weights keep nothing at the official thresholds), whose records are compared with the
official ones. Rows record the CPU model, its SIMD flags and the thread counts. Results go to
``benchmarks/results/cpu_<cpu>.json`` (``cpu_<cpu>_quick.json`` with --quick). Timings are only
meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import write_results  # noqa: E402

import promptseg  # noqa: E402
from promptseg.build import construct_sam  # noqa: E402
from promptseg.bundled import BUNDLED_MODEL_TYPE, bundled_checkpoint  # noqa: E402
from promptseg.configs import CONFIGS  # noqa: E402

IMAGE = Path(__file__).resolve().parents[1] / "tests" / "data" / "images" / "truck.jpg"
MODELS = ("vit_b", "bundled")
PATHS = ("official", "promptseg-default", "promptseg-torch", "promptseg-onnxruntime", "promptseg-onnxruntime-int8",
         "ort-fp32", "ort-int8")
OPTIONAL_PATHS = ("promptseg-torch-compile",)
AMG_SETTINGS = {"points_per_side": 16, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


CLICKS_PER_REP = 5
"""Clicks timed per repetition (their median is the repetition's click time), the first right after set_image."""


def cpu_description() -> dict[str, Any]:
    """CPU model name, the SIMD flags that matter for GEMMs, logical cores and the thread counts."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    present = set(flags.group(1).split()) if flags else set()
    return {
        "cpu": model.group(1).strip() if model else "unknown",
        "flags": [flag for flag in SIMD_FLAGS if flag in present],
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def cpu_slug(name: str) -> str:
    """``Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz`` -> ``intel_xeon_gold_6338``."""
    name = re.sub(r"\((r|tm)\)|cpu|@.*$|processor", "", name.lower())
    return "_".join(re.findall(r"[a-z0-9]+", name))[:48] or "unknown"


def weights(model_name: str) -> tuple[str, dict[str, torch.Tensor]]:
    """(registry name, state dict): the bundled weights, or random vit_b weights (seed 0)."""
    if model_name == "bundled":
        return BUNDLED_MODEL_TYPE, promptseg.build_sam(bundled_checkpoint(), engine="torch").state_dict()
    torch.manual_seed(0)
    return model_name, construct_sam(CONFIGS[model_name]).state_dict()


def test_image(model_name: str) -> np.ndarray:
    if model_name == "bundled":
        from promptseg.data.synthetic import HELD_OUT_SEED, generate_scene

        return generate_scene((HELD_OUT_SEED, 0), size=256).image
    return np.array(Image.open(IMAGE).convert("RGB"))


class Path_:
    """One path: a predictor-like object (``set_image``, ``predict``, ``predict_many``) and how to make
    its mask generator; ``note`` says what it is (the engine choice of promptseg's default)."""

    def __init__(self, predictor: Any, generator: Optional[Callable[[], Any]], note: str = "") -> None:
        self.predictor, self.generator, self.note = predictor, generator, note


def make_path(name: str, model_type: str, state: dict[str, torch.Tensor]) -> Path_:
    """Build the path ``name`` (one of :data:`PATHS` / :data:`OPTIONAL_PATHS`) for these weights."""
    if name == "official":
        import segment_anything

        model = construct_sam(CONFIGS[model_type], modeling=segment_anything.modeling)
        model.load_state_dict(state)
        model.eval()
        return Path_(OfficialPredictor(segment_anything.SamPredictor(model)),
                     lambda: segment_anything.SamAutomaticMaskGenerator(model, **AMG_SETTINGS))
    if name.startswith("ort-"):
        return Path_(RawOrt(model_type, state, int8=name == "ort-int8"), None, "encoder graph only, session.run")
    engine = {"promptseg-default": "auto", "promptseg-torch-compile": "torch"}.get(name, name.removeprefix("promptseg-"))
    model = construct_sam(CONFIGS[model_type])
    model.load_state_dict(state)
    promptseg.build.record_engine(model.eval(), engine)
    promptseg.export.prepare_engine(model)
    if name == "promptseg-torch-compile":
        from promptseg.encoders import ModuleImageEncoder

        model.image_encoder = torch.compile(model.image_encoder)
        predictor = promptseg.SamPredictor(model, encoder=ModuleImageEncoder(model))
    else:
        predictor = promptseg.SamPredictor(model)
    note = str(predictor.engine_choice) if predictor.engine_choice is not None else "torch.compile (inductor)"
    return Path_(predictor, lambda: promptseg.SamAutomaticMaskGenerator(model, **AMG_SETTINGS), note)


class OfficialPredictor:
    """The official predictor with a ``predict_many`` that calls ``predict`` once per prompt."""

    def __init__(self, predictor: Any) -> None:
        self.inner = predictor

    def set_image(self, image: np.ndarray) -> None:
        self.inner.set_image(image)

    def predict(self, **prompt: Any) -> Any:
        return self.inner.predict(**prompt)

    def predict_many(self, prompts: list[dict]) -> list:
        return [self.inner.predict(**prompt) for prompt in prompts]


class RawOrt:
    """ONNX Runtime on promptseg's exported encoder graph, called directly (the anchor): set_image only."""

    def __init__(self, model_type: str, state: dict[str, torch.Tensor], int8: bool) -> None:
        from promptseg.encoders.cache import find_entry
        from promptseg.encoders.onnxruntime import OnnxRuntimeEngine
        from promptseg.export import prepare_cpu_engine

        model = construct_sam(CONFIGS[model_type])
        model.load_state_dict(state)
        entry = find_entry(model) or prepare_cpu_engine(model.eval(), int8=int8)
        if int8 and not entry.has_int8:
            entry = prepare_cpu_engine(model, int8=True)
        self.engine = OnnxRuntimeEngine(entry.int8_encoder if int8 else entry.encoder)
        self.model = model

    def set_image(self, image: np.ndarray) -> None:
        tensor = torch.as_tensor(image).permute(2, 0, 1)[None].float()
        size = self.model.image_encoder.img_size
        scale = size / max(image.shape[:2])
        resized = torch.nn.functional.interpolate(
            tensor, (round(image.shape[0] * scale), round(image.shape[1] * scale)), mode="bilinear", antialias=True
        )
        self.engine({"images": self.model.preprocess(resized)})


def clicks(image: np.ndarray, count: int) -> list[dict[str, np.ndarray]]:
    """``count`` single foreground clicks on a regular grid over the image."""
    side = int(np.ceil(np.sqrt(count)))
    steps = (np.arange(side) + 0.5) / side
    xs, ys = np.meshgrid(steps * image.shape[1], steps * image.shape[0])
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)[:count]
    return [{"point_coords": point[None], "point_labels": np.array([1])} for point in points]


def records_key(records: list[dict]) -> list[tuple]:
    """The generator's records as sortable (area, bbox) tuples, for comparing paths."""
    return sorted((record["area"], tuple(round(float(v), 3) for v in record["bbox"])) for record in records)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return 1e3 * (time.perf_counter() - start), result


def records_match(ours: list[tuple], theirs: list[tuple]) -> bool:
    """The parity rule for records whose masks may differ at pixels within float32 rounding of the
    threshold: the same count, and sorted (area, bbox) pairs with areas within 0.5% and boxes within 2 px."""
    if len(ours) != len(theirs):
        return False
    return all(
        abs(a[0] - b[0]) <= 0.005 * max(a[0], b[0]) and max(abs(x - y) for x, y in zip(a[1], b[1])) <= 2
        for a, b in zip(ours, theirs)
    )


ONNX_RUNTIME_PATHS = ("promptseg-onnxruntime", "promptseg-onnxruntime-int8", "ort-fp32", "ort-int8")
"""Paths that hold ONNX Runtime sessions. Each is built just before its turn in a repetition and freed
right after: while vit_b's sessions are alive, every other path's page faults cost about twice the
system time (the official encoder, ~3.9 M faults a forward: 12.5 -> 14.6-19.3 s; promptseg's +15%),
which skewed an earlier run's ratios (benchmarks/NOTES.md, CPU)."""


def run_model(model_name: str, paths: list[str], reps: int, amg: bool = True) -> list[dict[str, Any]]:
    """Rows of one model: each path's median ms per measure, repetitions interleaved across paths
    (``amg``: also automatic mask generation). Paths of :data:`ONNX_RUNTIME_PATHS` live only during
    their own turn (built and warmed up untimed, then freed)."""
    model_type, state = weights(model_name)
    image = test_image(model_name)
    one_click = clicks(image, 1)[0]
    many = clicks(image, 64)
    # promptseg's default last: its automatic choice sees the exports the other paths made
    order = sorted(paths, key=lambda path: path == "promptseg-default")
    kept: dict[str, Optional[Path_]] = {}
    for name in order:
        try:
            path = make_path(name, model_type, state)  # also makes the export an ONNX Runtime path needs
        except ImportError as error:  # segment_anything or onnxruntime missing
            print(f"skipping {name}: {error}")
            continue
        warm_up(path, image, one_click)
        kept[name] = None if name in ONNX_RUNTIME_PATHS else path  # None: rebuilt for each repetition
        del path
        gc.collect()
    notes: dict[str, str] = {}
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in kept}
    records: dict[str, list[tuple]] = {}
    for rep in range(reps):
        for name in kept:
            path = kept[name]
            if path is None:
                path = make_path(name, model_type, state)
                warm_up(path, image, one_click)
            notes[name] = path.note
            measures = samples[name]
            measures.setdefault("set_image_ms", []).append(timed(lambda: path.predictor.set_image(image))[0])
            if not isinstance(path.predictor, RawOrt):
                # the first click after set_image and CLICKS_PER_REP - 1 more: one click is tens of ms, so one timing is noise
                clicks_ms = [timed(lambda: path.predictor.predict(**one_click, multimask_output=True))[0]
                             for _ in range(CLICKS_PER_REP)]
                measures.setdefault("click_ms", []).append(statistics.median(clicks_ms))
                measures.setdefault("predict_many_64_ms", []).append(timed(lambda: path.predictor.predict_many(many))[0])
                if amg:
                    milliseconds, generated = timed(lambda: path.generator().generate(image))
                    measures.setdefault("amg_16x16_ms", []).append(milliseconds)
                    records[name] = records_key(generated)
            print(f"{model_name} rep {rep + 1}/{reps} {name}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in measures.items()))
            if kept[name] is None:
                del path
                gc.collect()
    official = records.get("official")
    rows = []
    for name, measures in samples.items():
        row = {"model": model_name, "path": name, "note": notes[name], "reps": reps}
        row.update({key: statistics.median(values) for key, values in measures.items()})
        if name in records:
            row["amg_records"] = len(records[name])
            row["amg_same_records_as_official"] = None if official is None else records[name] == official
            row["amg_records_match_official"] = None if official is None else records_match(records[name], official)
        rows.append(row)
    base = next((row for row in rows if row["path"] == "official"), None)
    for row in rows:
        for key in ("set_image_ms", "click_ms", "predict_many_64_ms", "amg_16x16_ms"):
            if base is not None and key in row and key in base:
                row[key.replace("_ms", "_vs_official")] = round(row[key] / base[key], 3)
    return rows


def warm_up(path: Path_, image: np.ndarray, one_click: dict[str, np.ndarray]) -> None:
    """One untimed round: set_image and, where the path decodes, a click."""
    path.predictor.set_image(image)
    if not isinstance(path.predictor, RawOrt):
        path.predictor.predict(**one_click, multimask_output=True)


def profile_encoder(model_name: str, top: int = 25) -> dict[str, Any]:
    """Op shares (percent of self CPU time) of one encoder forward, official and promptseg torch,
    grouped into GEMM, attention softmax, LayerNorm, GELU, copies/layout, elementwise, conv, other."""
    import segment_anything
    from torch.profiler import ProfilerActivity, profile

    model_type, state = weights(model_name)
    size = CONFIGS[model_type].image_size
    images = torch.randn(1, 3, size, size)
    groups = {  # first match wins
        "conv": ("convolution", "conv2d", "mkldnn_convolution"),
        "gemm": ("addmm", "mm", "bmm", "baddbmm", "matmul", "linear", "einsum", "mkldnn"),
        "softmax": ("softmax",),
        "layer_norm": ("layer_norm",),
        "gelu": ("gelu",),
        "copies_layout": ("copy_", "clone", "contiguous", "cat", "pad", "constant_pad", "index", "empty", "permute",
                          "reshape", "view", "transpose", "unbind", "as_strided"),
        "elementwise": ("add", "mul", "div", "sub"),
        "attention_sdpa": ("scaled_dot_product", "_flash_attention"),
    }
    shares = {}
    for impl in ("official", "promptseg-torch"):
        model = construct_sam(CONFIGS[model_type], modeling=segment_anything.modeling if impl == "official" else None)
        model.load_state_dict(state)
        encoder = model.eval().image_encoder
        with torch.no_grad():
            encoder(images)  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                encoder(images)
        events = [(event.key, event.self_cpu_time_total) for event in prof.key_averages()]
        total = sum(time_us for _, time_us in events) or 1
        grouped = dict.fromkeys([*groups, "other"], 0.0)
        for key, time_us in events:
            name = key.removeprefix("aten::").lower().lstrip("_").removeprefix("native_")
            group = next((g for g, names in groups.items() if any(name == n or name.startswith(n) for n in names)), "other")
            grouped[group] += time_us
        shares[impl] = {
            "groups_percent": {g: round(100 * t / total, 1) for g, t in grouped.items()},
            "top_ops_percent": {key: round(100 * t / total, 1) for key, t in sorted(events, key=lambda e: -e[1])[:top]},
        }
        print(impl, shares[impl]["groups_percent"])
    return {"model": model_name, "shares": shares, "note": "shares of self CPU time only; absolute times not kept"}


FLOOR_GEMM = (4096, 768, 3072)
"""(M, K, N) of the GEMM whose float32 rate stands for the CPU's best: vit_b's MLP expansion at 1024 px."""


def gemm_gflops(shape: tuple[int, int, int] = FLOOR_GEMM, reps: int = 9) -> float:
    """The best float32 GEMM rate achieved (GFLOP/s, fastest of ``reps`` after a warm-up) at the current
    thread count: the floor it gives is the lowest this CPU allows, so a target below it is out of reach."""
    rows, inner, cols = shape
    a, b = torch.randn(rows, inner), torch.randn(inner, cols)
    a @ b
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        samples.append(time.perf_counter() - start)
    return 2 * rows * inner * cols / min(samples) / 1e9


def encoder_floor(model_name: str, reps: int = 3) -> dict[str, Any]:
    """How fast an exact float32 ``set_image`` could be here: the encoder's multiply-adds (counted by
    ``torch.utils.flop_counter`` on the official and on promptseg's forward), divided by this CPU's
    best float32 GEMM rate, against 0.4x the official encoder's time (the issue's target), timed
    in the same run (medians of ``reps`` after a warm-up, interleaved with promptseg's default)."""
    import segment_anything
    from torch.utils.flop_counter import FlopCounterMode

    model_type, state = weights(model_name)
    size = CONFIGS[model_type].image_size
    images = torch.randn(1, 3, size, size)
    encoders, flops = {}, {}
    for impl in ("official", "promptseg-torch"):
        model = construct_sam(CONFIGS[model_type], modeling=segment_anything.modeling if impl == "official" else None)
        model.load_state_dict(state)
        encoders[impl] = model.eval().image_encoder
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            encoders[impl](images)
        flops[impl] = counter.get_total_flops()
    times: dict[str, list[float]] = {impl: [] for impl in encoders}
    with torch.no_grad():
        for encoder in encoders.values():
            encoder(images)
        for _ in range(reps):
            for impl, encoder in encoders.items():
                milliseconds, _ = timed(lambda: encoder(images))
                times[impl].append(milliseconds)
    rate = gemm_gflops()
    official_ms = statistics.median(times["official"])
    floor_ms = 1e3 * flops["official"] / (rate * 1e9)
    row = {
        "model": model_name,
        "encoder_gflop": {impl: round(count / 1e9, 2) for impl, count in flops.items()},
        "gemm_gflops": round(rate, 1),
        "gemm_shape": list(FLOOR_GEMM),
        "official_encoder_ms": round(official_ms, 1),
        "promptseg_encoder_ms": round(statistics.median(times["promptseg-torch"]), 1),
        "target_ms": round(0.4 * official_ms, 1),
        "float32_floor_ms": round(floor_ms, 1),
        "floor_vs_official": round(floor_ms / official_ms, 3),
    }
    print(row)
    return row


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=[*PATHS, *OPTIONAL_PATHS])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per path (median)")
    parser.add_argument("--threads", type=int, help="torch (and ONNX Runtime) intra-op threads (default torch's)")
    parser.add_argument("--no-amg", nargs="*", default=[], choices=MODELS, metavar="MODEL",
                        help="models measured without automatic mask generation (vit_b's AMG takes minutes per path)")
    parser.add_argument("--quick", action="store_true", help="the bundled model, 1 repetition: a check that it runs")
    parser.add_argument("--profile", choices=MODELS, help="only the torch-profiler op shares of this model's encoder")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="the whole run with promptseg.allocator.keep_freed_memory (every path, the official one too)")
    parser.add_argument("--floor", action="store_true",
                        help="only each model's encoder arithmetic against this CPU's float32 GEMM rate (--models)")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.reps = ["bundled"], 1
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = cpu_description()
    if args.keep_freed_memory:
        from promptseg.allocator import keep_freed_memory

        machine["allocator"] = "keeps freed memory" if keep_freed_memory() else "glibc default (could not apply)"
    if args.profile:
        slug = cpu_slug(machine["cpu"])
        name = f"cpu_profile_{slug}" if args.profile == "vit_b" else f"cpu_profile_{args.profile}_{slug}"
        path = write_results(name, {**machine, **profile_encoder(args.profile)})
        print(f"wrote {path}")
        return
    if args.floor:
        rows = [{**machine, **encoder_floor(model_name, args.reps)} for model_name in args.models]
        path = write_results(f"cpu_floor_{cpu_slug(machine['cpu'])}", {"rows": rows})
        print(f"wrote {path}")
        return
    rows = []
    for model_name in args.models:
        rows += [{**machine, **row} for row in run_model(model_name, args.paths, args.reps, model_name not in args.no_amg)]
    name = f"cpu_{cpu_slug(machine['cpu'])}" + ("_keep_freed_memory" if args.keep_freed_memory else "") + ("_quick" if args.quick else "")
    path = write_results(name, {"quick": args.quick, "amg_settings": AMG_SETTINGS, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
