"""The model registry and ``build_sam``: construct a SAM, load its weights, place it."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional, Union

import torch
from torch import nn

from promptseg.checkpoint import identify_model_type, load_into, read_state_dict
from promptseg.configs import ALIASES, CONFIGS, SamConfig
from promptseg.errors import UnknownModelTypeError
from promptseg import modeling as promptseg_modeling
from promptseg.modeling import Sam
from promptseg.ops import check_backend, set_backend

Checkpoint = Optional[Union[str, "os.PathLike[str]"]]
DeviceLike = Optional[Union[str, torch.device]]


def model_types() -> list[str]:
    """Every name ``build_sam`` accepts."""
    return sorted(set(CONFIGS) | set(ALIASES))


def resolve_model_type(model_type: str) -> str:
    """Canonical registry name of ``model_type`` (aliases resolved)."""
    name = ALIASES.get(model_type, model_type)
    if name not in CONFIGS:
        raise UnknownModelTypeError(f"unknown model type {model_type!r}; expected one of {model_types()}")
    return name


def construct_sam(config: SamConfig, modeling: Optional[ModuleType] = None) -> Sam:
    """A randomly initialised fp32 SAM on the CPU, in eval mode.

    Args:
        config: the architecture.
        modeling: the module holding the network classes; promptseg's by default.
            The tests pass ``segment_anything.modeling`` to build the official
            model of the same config.
    """
    modeling = modeling or promptseg_modeling
    norm_layer = getattr(modeling, "LayerNorm", nn.LayerNorm)
    grid = config.embedding_size
    image_encoder = modeling.ImageEncoderViT(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.encoder_embed_dim,
        depth=config.encoder_depth,
        num_heads=config.encoder_num_heads,
        mlp_ratio=config.mlp_ratio,
        out_chans=config.prompt_embed_dim,
        qkv_bias=True,
        norm_layer=partial(norm_layer, eps=1e-6),
        use_rel_pos=True,
        window_size=config.window_size,
        global_attn_indexes=config.encoder_global_attn_indexes,
    )
    prompt_encoder = modeling.PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )
    mask_decoder = modeling.MaskDecoder(
        num_multimask_outputs=config.num_multimask_outputs,
        transformer=modeling.TwoWayTransformer(
            depth=config.decoder_depth,
            embedding_dim=config.prompt_embed_dim,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_num_heads,
        ),
        transformer_dim=config.prompt_embed_dim,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    return modeling.Sam(image_encoder, prompt_encoder, mask_decoder).eval()


def build_sam(
    model_type: Optional[str] = "vit_b",
    checkpoint: Checkpoint = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
    backend: str = "auto",
) -> Sam:
    """Build a SAM of ``model_type`` and load ``checkpoint`` into it.

    Args:
        model_type: a registry name (``vit_b``, ``vit_l``, ``vit_h``, ``default``),
            or None to take it from the checkpoint. For compatibility with the
            official ``build_sam(checkpoint)``, a path to an existing file given
            as the first argument is read as the checkpoint.
        checkpoint: a ``.pth`` (read with ``weights_only=True``) or ``.safetensors``
            file; None leaves the weights random.
        device: where to place the model (default: CPU).
        dtype: torch.float32 (default), torch.bfloat16 or torch.float16.
        backend: ``auto`` runs the CUDA kernels where they apply (CUDA, bf16/fp16,
            extension built) and are in force: opt-in (``PROMPTSEG_KERNELS=1``) until a GPU
            record verified them on the device (``promptseg.ops.kernel_policy``); ``kernels``
            opts this model in; ``reference`` always runs the PyTorch references. A kernel is
            checked against its reference on its first use (``promptseg.ops.dispatch``).
    Returns:
        The model in eval mode.
    """
    if checkpoint is None and model_type is not None and model_type not in model_types() and Path(model_type).is_file():
        model_type, checkpoint = None, model_type
    check_backend(backend)
    if dtype is not None and dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
    state_dict = read_state_dict(checkpoint) if checkpoint is not None else None
    if model_type is None:
        if state_dict is None:
            raise ValueError("model_type=None needs a checkpoint to read the model type from")
        model_type = identify_model_type(state_dict)
        if model_type is None:
            raise ValueError(f"could not tell the model type of {str(checkpoint)!r}; pass model_type explicitly")
    name = resolve_model_type(model_type)
    model = construct_sam(CONFIGS[name])
    if state_dict is not None:
        load_into(model, state_dict, name, source=f"checkpoint {str(checkpoint)!r}")
    return set_backend(model, backend).to(device=device, dtype=dtype)


def _registry_entry(model_type: str) -> Callable[..., Sam]:
    def build(checkpoint: Checkpoint = None, device: DeviceLike = None, dtype: Optional[torch.dtype] = None) -> Sam:
        return build_sam(model_type, checkpoint=checkpoint, device=device, dtype=dtype)

    build.__name__ = f"build_sam_{model_type}"
    build.__doc__ = f"Build a {model_type} SAM; see :func:`build_sam`."
    return build


build_sam_vit_h = _registry_entry("vit_h")
build_sam_vit_l = _registry_entry("vit_l")
build_sam_vit_b = _registry_entry("vit_b")
build_sam_vit_tiny = _registry_entry("vit_tiny")


class _Registry(dict):
    """``sam_model_registry``: a dict of builders that names the valid keys when indexed wrongly."""

    def __missing__(self, key: str) -> Callable[..., Sam]:
        raise UnknownModelTypeError(f"unknown model type {key!r}; expected one of {sorted(self)}")


sam_model_registry: dict[str, Callable[..., Sam]] = _Registry(
    default=build_sam_vit_h, vit_h=build_sam_vit_h, vit_l=build_sam_vit_l, vit_b=build_sam_vit_b, vit_tiny=build_sam_vit_tiny
)
