"""Shared test helpers: images, model configs, and official/promptseg model pairs with equal weights."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from promptseg.build import construct_sam
from promptseg.configs import SamConfig

# segment_anything (the official package, a test extra) is optional: helpers that need it skip the
# calling test or fixture when it is missing, so collection never fails on it.
OFFICIAL_MISSING = "the official segment_anything is not installed (pip install segment-anything==1.0)"
IMAGES_DIR = Path(__file__).parent / "data" / "images"
IMAGE_NAMES = ("truck.jpg", "dog.jpg", "groceries.jpg")

# A small SAM that exercises every code path (windowed layers with padding: 16 -> 21, a global layer).
TINY = SamConfig(
    encoder_embed_dim=64,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    image_size=256,
    window_size=7,
    prompt_embed_dim=64,
    decoder_mlp_dim=128,
    decoder_num_heads=4,
    iou_head_hidden_dim=64,
)


def load_image(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB test photo."""
    return np.array(Image.open(IMAGES_DIR / name).convert("RGB"))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in float64."""
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    return ((actual - expected).norm() / expected.norm()).item()


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the parameters that SAM initialises to constants (position embeddings, relative
    position tables, norm affines) random values, so that parity tests exercise them."""
    generator = torch.Generator().manual_seed(seed)

    def noise(tensor: torch.Tensor) -> torch.Tensor:
        return 0.1 * torch.randn(tensor.shape, generator=generator)

    for module in model.modules():
        if "LayerNorm" in type(module).__name__:
            module.weight.copy_(1.0 + noise(module.weight))
            module.bias.copy_(noise(module.bias))
    for name, parameter in model.named_parameters():
        if "rel_pos" in name or "pos_embed" in name:
            parameter.copy_(noise(parameter))
    return model


def official_public_names(module: Any) -> dict[str, Any]:
    """The names code can take from an official module: the classes, functions and constants it
    defines itself and, for a package, what its ``__init__`` re-exports from its own submodules.
    Names it merely imports (``torch``, ``np``, ``Optional``, ``deepcopy``, ...) are left out."""
    own = (module.__name__,)
    if hasattr(module, "__path__"):
        own += (f"{module.__name__}.",)
    names = {}
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        owner = getattr(value, "__module__", None)
        # A constant (a dict, a number) has no __module__ of its own; typing aliases and
        # imported classes and functions name the module that defines them.
        if owner is None or owner.startswith(own):
            names[name] = value
    return names


def official_sam(config: SamConfig):
    """An official ``segment_anything`` Sam built with ``config`` (random weights, eval mode)."""
    pytest.importorskip("segment_anything", reason=OFFICIAL_MISSING)
    import segment_anything.modeling

    return construct_sam(config, modeling=segment_anything.modeling)


def model_pair(config: SamConfig, seed: int = 0):
    """(official, promptseg) models of ``config`` holding the same random weights."""
    torch.manual_seed(seed)
    official = randomize_(official_sam(config), seed)
    ours = construct_sam(config)
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


def cuda_predictors(official_model, model, image: np.ndarray, dtype: torch.dtype = torch.bfloat16):
    """(official fp32 SamPredictor, promptseg SamPredictor in ``dtype``), both on CUDA with ``image``
    set; the models are copies of ``official_model`` and ``model`` (a vit_b pair)."""
    import copy

    segment_anything = pytest.importorskip("segment_anything", reason=OFFICIAL_MISSING)

    import promptseg
    from promptseg.configs import VIT_B

    official = segment_anything.SamPredictor(copy.deepcopy(official_model).to("cuda"))
    official.set_image(image)
    ours_model = construct_sam(VIT_B)
    ours_model.load_state_dict(model.state_dict())
    ours = promptseg.SamPredictor(ours_model.to(device="cuda", dtype=dtype))
    ours.set_image(image)
    return official, ours


def mixed_prompts(height: int, width: int, count: int, seed: int = 0, mask_size: int = 256) -> list[dict]:
    """``count`` prompts cycling through one point, several points, a box, points and a box, points and a mask."""
    rng = np.random.default_rng(seed)
    mask = rng.normal(size=(1, mask_size, mask_size)).astype(np.float32)
    prompts = []
    for index in range(count):
        points = rng.uniform([0, 0], [width, height], size=(1 + index % 5, 2))
        labels = rng.integers(0, 2, size=len(points))
        x0, y0 = rng.uniform([0, 0], [0.5 * width, 0.5 * height])
        box = np.array([x0, y0, x0 + 0.4 * width, y0 + 0.4 * height])
        kind = index % 5
        if kind == 0:
            prompts.append({"point_coords": points[:1], "point_labels": np.array([1])})
        elif kind == 1:
            prompts.append({"point_coords": points, "point_labels": labels})
        elif kind == 2:
            prompts.append({"box": box})
        elif kind == 3:
            prompts.append({"point_coords": points, "point_labels": labels, "box": box})
        else:
            prompts.append({"point_coords": points[:2], "point_labels": labels[:2], "mask_input": mask})
    return prompts


def poison_allocator() -> None:
    """Leave NaN-filled blocks in the CUDA caching allocator, so that a kernel that skips a write shows."""
    block = torch.full((1 << 28,), float("nan"), device="cuda")
    del block


def read_yolo_seg(folder: Path) -> tuple[dict[int, str], dict[str, list[tuple[int, np.ndarray]]]]:
    """A YOLO-seg dataset as ultralytics documents it: data.yaml's ``names``, and per image stem a list of
    (class, (N, 2) points normalised to [0, 1]) from ``labels/<stem>.txt`` lines ``class x1 y1 x2 y2 ...``."""
    import yaml

    config = yaml.safe_load((folder / "data.yaml").read_text())
    names = config["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): v for k, v in names.items()}
    assert config["nc"] == len(names)
    labels = {}
    for path in sorted((folder / "labels").glob("*.txt")):
        rows = []
        for line in path.read_text().splitlines():
            values = line.split()
            assert len(values) >= 7 and (len(values) - 1) % 2 == 0, line[:80]
            points = np.asarray(values[1:], np.float64).reshape(-1, 2)
            assert ((points >= 0) & (points <= 1)).all()
            rows.append((int(values[0]), points))
        labels[path.stem] = rows
    return names, labels
