"""``sam2.build_sam`` under its official path: build a SAM 2 / 2.1 image model from an official
config name, without hydra.

``build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt", device="cpu")`` builds the
model of that config (:mod:`promptseg.sam2.configs`), loads the checkpoint's image weights
strictly (the video-only weights are skipped with one info line), moves it to ``device`` and sets
eval mode. Video predictors are not built.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Optional, Sequence, Union

from promptseg.sam2.checkpoint import load_checkpoint
from promptseg.sam2.configs import model_config
from promptseg.sam2.modeling.backbones.hieradet import Hiera
from promptseg.sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from promptseg.sam2.modeling.position_encoding import PositionEmbeddingSine
from promptseg.sam2.modeling.sam2_base import SAM2Base

__all__ = [
    "HF_MODEL_ID_TO_FILENAMES",
    "POSTPROCESSING_OVERRIDES",
    "build_sam2",
    "build_sam2_hf",
    "build_sam2_video_predictor",
    "build_sam2_video_predictor_hf",
    "instantiate_model",
]

PathLike = Union[str, "os.PathLike[str]"]

HF_MODEL_ID_TO_FILENAMES: dict[str, tuple[str, str]] = {
    "facebook/sam2-hiera-tiny": ("configs/sam2/sam2_hiera_t.yaml", "sam2_hiera_tiny.pt"),
    "facebook/sam2-hiera-small": ("configs/sam2/sam2_hiera_s.yaml", "sam2_hiera_small.pt"),
    "facebook/sam2-hiera-base-plus": ("configs/sam2/sam2_hiera_b+.yaml", "sam2_hiera_base_plus.pt"),
    "facebook/sam2-hiera-large": ("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_large.pt"),
    "facebook/sam2.1-hiera-tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "facebook/sam2.1-hiera-small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "facebook/sam2.1-hiera-base-plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "facebook/sam2.1-hiera-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}
"""Hugging Face model id -> (official config name, checkpoint file name)."""

POSTPROCESSING_OVERRIDES = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
"""What ``apply_postprocessing=True`` adds: single-mask requests fall back to the best multimask
output when the single mask is unstable."""


def build_sam2(
    config_file: str,
    ckpt_path: Optional[PathLike] = None,
    device: Any = "cuda",
    mode: str = "eval",
    hydra_overrides_extra: Sequence[str] = (),
    apply_postprocessing: bool = True,
    **kwargs: Any,
) -> SAM2Base:
    """Build the SAM 2 image model of an official config.

    Args:
        config_file: an official config name, e.g. ``"configs/sam2.1/sam2.1_hiera_t.yaml"``,
            ``"configs/sam2/sam2_hiera_l.yaml"`` (".yaml" optional).
        ckpt_path: an official checkpoint (``{"model": state_dict}``), or None for random weights.
        device: where the model goes; mode: "eval" sets eval mode (anything else leaves train mode).
        hydra_overrides_extra: hydra-style overrides of model options, e.g.
            ``"++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=false"``.
        apply_postprocessing: add :data:`POSTPROCESSING_OVERRIDES`, as officially.
        **kwargs: accepted and ignored, as officially.

    Raises:
        ValueError: unknown config name or malformed override; CheckpointError, FileNotFoundError:
            see :func:`promptseg.sam2.checkpoint.load_checkpoint`.
    """
    overrides = list(hydra_overrides_extra)
    if apply_postprocessing:
        overrides += POSTPROCESSING_OVERRIDES
    model = instantiate_model(model_config(config_file, overrides))
    if ckpt_path is not None:
        load_checkpoint(model, ckpt_path)
    model = model.to(device)
    if mode == "eval":
        model.eval()
    return model


def instantiate_model(config: dict[str, Any]) -> SAM2Base:
    """The :class:`SAM2Base` of a ``model:`` tree from :func:`promptseg.sam2.configs.model_config`."""
    options = dict(config)
    encoder = options.pop("image_encoder")
    neck = dict(encoder["neck"])
    position_encoding = PositionEmbeddingSine(**neck.pop("position_encoding"))
    image_encoder = ImageEncoder(
        trunk=Hiera(**_tuples(encoder["trunk"])),
        neck=FpnNeck(position_encoding=position_encoding, **neck),
        scalp=encoder.get("scalp", 0),
    )
    return SAM2Base(image_encoder, **options)


def build_sam2_hf(model_id: str, **kwargs: Any) -> SAM2Base:
    """Download an official checkpoint from the Hugging Face Hub (needs ``huggingface_hub``) and build it.

    Raises:
        ValueError: an unknown model id; ImportError: huggingface_hub is not installed.
    """
    config_name, ckpt_path = _hf_download(model_id)
    return build_sam2(config_file=config_name, ckpt_path=ckpt_path, **kwargs)


def build_sam2_video_predictor(
    config_file: str,
    ckpt_path: Optional[PathLike] = None,
    device: Any = "cuda",
    mode: str = "eval",
    hydra_overrides_extra: Sequence[str] = (),
    apply_postprocessing: bool = True,
    vos_optimized: bool = False,
    **kwargs: Any,
) -> None:
    """Not supported: promptseg builds SAM 2 image models only."""
    raise NotImplementedError(_NO_VIDEO)


def build_sam2_video_predictor_hf(model_id: str, **kwargs: Any) -> None:
    """Not supported: promptseg builds SAM 2 image models only."""
    raise NotImplementedError(_NO_VIDEO)


_NO_VIDEO = (
    "promptseg.sam2 has the SAM 2 image models only (build_sam2, SAM2ImagePredictor, "
    "SAM2AutomaticMaskGenerator); for video use the official sam2 package"
)


def _hf_download(model_id: str) -> tuple[str, str]:
    if model_id not in HF_MODEL_ID_TO_FILENAMES:
        known = ", ".join(HF_MODEL_ID_TO_FILENAMES)
        raise ValueError(f"unknown SAM 2 model id {model_id!r}; known ids: {known}")
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ImportError(
            f"build_sam2_hf({model_id!r}) downloads with huggingface_hub, which is not installed; "
            f"install it, or download {HF_MODEL_ID_TO_FILENAMES[model_id][1]} yourself and call "
            f"build_sam2({HF_MODEL_ID_TO_FILENAMES[model_id][0]!r}, ckpt_path=...)"
        )
    from huggingface_hub import hf_hub_download

    config_name, checkpoint_name = HF_MODEL_ID_TO_FILENAMES[model_id]
    return config_name, hf_hub_download(repo_id=model_id, filename=checkpoint_name)


def _tuples(options: dict[str, Any]) -> dict[str, Any]:
    """Config lists as tuples (the trunk's arguments are tuples)."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}
