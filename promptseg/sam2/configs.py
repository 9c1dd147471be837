"""The official SAM 2 and SAM 2.1 model configs as Python data, so that no hydra is needed.

Each config is the ``model:`` tree of the official YAML file without its ``_target_`` keys and
without the video-only ``memory_attention`` / ``memory_encoder`` sections (see
:mod:`promptseg.sam2.build_sam` for how it becomes a model). :func:`model_config` looks a config
up by its official name (``"configs/sam2.1/sam2.1_hiera_t.yaml"``, ...) and applies hydra-style
overrides (``"++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true"``).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Iterable

__all__ = ["CONFIG_FILES", "HIERA_SIZES", "apply_overrides", "config_name", "model_config"]

# Trunk arguments of each size (those the official YAML files set; the rest are Hiera's defaults),
# the trunk's widths from lowest resolution up, and (embed_dim, number of blocks) to recognise a checkpoint.
HIERA_SIZES: dict[str, dict[str, Any]] = {
    "t": {
        "trunk": {
            "embed_dim": 96,
            "num_heads": 1,
            "stages": [1, 2, 7, 2],
            "global_att_blocks": [5, 7, 9],
            "window_pos_embed_bkg_spatial_size": [7, 7],
        },
        "channels": [768, 384, 192, 96],
        "blocks": 12,
    },
    "s": {
        "trunk": {
            "embed_dim": 96,
            "num_heads": 1,
            "stages": [1, 2, 11, 2],
            "global_att_blocks": [7, 10, 13],
            "window_pos_embed_bkg_spatial_size": [7, 7],
        },
        "channels": [768, 384, 192, 96],
        "blocks": 16,
    },
    "b+": {"trunk": {"embed_dim": 112, "num_heads": 2}, "channels": [896, 448, 224, 112], "blocks": 24},
    "l": {
        "trunk": {
            "embed_dim": 144,
            "num_heads": 2,
            "stages": [2, 6, 36, 4],
            "global_att_blocks": [23, 33, 43],
            "window_pos_embed_bkg_spatial_size": [7, 7],
            "window_spec": [8, 4, 16, 8],
        },
        "channels": [1152, 576, 288, 144],
        "blocks": 48,
    },
}

# The scalar options of the model (equal for every size); SAM 2.1 adds and changes a few video options.
_COMMON_OPTIONS: dict[str, Any] = {
    "num_maskmem": 7,
    "image_size": 1024,
    "sigmoid_scale_for_mem_enc": 20.0,
    "sigmoid_bias_for_mem_enc": -10.0,
    "use_mask_input_as_output_without_sam": True,
    "directly_add_no_mem_embed": True,
    "use_high_res_features_in_sam": True,
    "multimask_output_in_sam": True,
    "iou_prediction_use_sigmoid": True,
    "use_obj_ptrs_in_encoder": True,
    "add_tpos_enc_to_obj_ptrs": False,
    "only_obj_ptrs_in_the_past_for_eval": True,
    "pred_obj_scores": True,
    "pred_obj_scores_mlp": True,
    "fixed_no_obj_ptr": True,
    "multimask_output_for_tracking": True,
    "use_multimask_token_for_obj_ptr": True,
    "multimask_min_pt_num": 0,
    "multimask_max_pt_num": 1,
    "use_mlp_for_obj_ptr_proj": True,
    "compile_image_encoder": False,
}
_SAM2_1_OPTIONS: dict[str, Any] = {
    "no_obj_embed_spatial": True,
    "add_tpos_enc_to_obj_ptrs": True,
    "proj_tpos_enc_in_obj_ptrs": True,
    "use_signed_tpos_enc_to_obj_ptrs": True,
}

# Official config name -> (size, generation). The top-level sam2_hiera_*.yaml are the official
# repository's links to the SAM 2.0 files.
CONFIG_FILES: dict[str, tuple[str, str]] = {}
for _size in HIERA_SIZES:
    CONFIG_FILES[f"configs/sam2.1/sam2.1_hiera_{_size}.yaml"] = (_size, "2.1")
    CONFIG_FILES[f"configs/sam2/sam2_hiera_{_size}.yaml"] = (_size, "2")
    CONFIG_FILES[f"sam2_hiera_{_size}.yaml"] = (_size, "2")

VIDEO_SECTIONS = ("memory_attention", "memory_encoder")


def config_name(config_file: str) -> str:
    """The official name of ``config_file`` (".yaml" may be left out, a leading "/" is ignored).

    Raises:
        ValueError: not an official image-model config; the message lists them.
    """
    if not isinstance(config_file, str):
        raise TypeError(
            "config_file must be a config name such as 'configs/sam2.1/sam2.1_hiera_t.yaml', "
            f"got {type(config_file).__name__}"
        )
    name = config_file.strip().lstrip("/")
    if not name.endswith(".yaml"):
        name += ".yaml"
    if name not in CONFIG_FILES:
        known = ", ".join(sorted(CONFIG_FILES))
        raise ValueError(f"unknown SAM 2 config {config_file!r}; promptseg knows these official configs: {known}")
    return name


def model_config(config_file: str, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The ``model:`` tree of an official config (a fresh nested dict), with ``overrides`` applied."""
    size, generation = CONFIG_FILES[config_name(config_file)]
    spec = HIERA_SIZES[size]
    config: dict[str, Any] = {
        "image_encoder": {
            "scalp": 1,
            "trunk": copy.deepcopy(spec["trunk"]),
            "neck": {
                "position_encoding": {"num_pos_feats": 256, "normalize": True, "scale": None, "temperature": 10000},
                "d_model": 256,
                "backbone_channel_list": list(spec["channels"]),
                "fpn_top_down_levels": [2, 3],
                "fpn_interp_model": "nearest",
            },
        },
        **copy.deepcopy(_COMMON_OPTIONS),
    }
    if generation == "2.1":
        config.update(_SAM2_1_OPTIONS)
    return apply_overrides(config, overrides)


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply hydra command-line overrides of the model tree to ``config`` (in place; returned).

    ``model.a.b=v`` sets an existing key; ``+model.a.b=v`` adds a new one; ``++model.a.b=v`` sets
    or adds. Values are YAML-like scalars (true/false, null, numbers, strings) or JSON lists.

    Raises:
        ValueError: a malformed override, a key outside ``model``, a video-only section, or
            (without a leading "+") a key that does not exist.
    """
    for override in overrides:
        key, sep, text = str(override).partition("=")
        if not sep:
            raise ValueError(f"override {override!r} must look like '++model.some.key=value'")
        mode = "set-or-add" if key.startswith("++") else "add" if key.startswith("+") else "set"
        path = key.lstrip("+").split(".")
        if path[0] != "model" or len(path) < 2 or "_target_" in path:
            raise ValueError(
                f"override {override!r}: promptseg applies overrides of model options only ('++model.key=value')"
            )
        if path[1] in VIDEO_SECTIONS:
            raise ValueError(
                f"override {override!r}: {path[1]} belongs to the video model, which promptseg does not build"
            )
        node = config
        for part in path[1:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise ValueError(f"override {override!r}: {part!r} is not a group of options")
            if part not in node or node[part] is None:
                if mode == "set":
                    raise ValueError(f"override {override!r}: no option {part!r}; write '++{key}={text}' to add it")
                node[part] = {}
            node = node[part]
        if mode == "set" and path[-1] not in node:
            raise ValueError(f"override {override!r}: no option {path[-1]!r}; write '++{key}={text}' to add it")
        node[path[-1]] = _parse_value(text)
    return config


def _parse_value(text: str) -> Any:
    """A YAML-like scalar (or a JSON list) from an override's right-hand side."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    for parse in (int, float, json.loads):
        try:
            return parse(stripped)
        except ValueError:
            continue
    return stripped.strip("'\"")
