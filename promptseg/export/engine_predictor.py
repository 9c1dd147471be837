"""``EnginePredictor``: the ``SamPredictor`` API with the image encoder and the mask decoder run by
engines: callables on the exported graphs (TensorRT, or ONNX Runtime).

Everything around the networks (image checks, resizing, normalisation,
prompt validation and packing, mask upscaling and thresholding) is
``SamPredictor``'s own code; only the two network calls are replaced.
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol

import torch
from torch import nn

from promptseg.export.profiles import EngineLimits
from promptseg.inputs import check_prompt_tensors
from promptseg.modeling import Sam
from promptseg.modeling.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, NOT_A_POINT
from promptseg.predictor import SamPredictor
from promptseg.prompt_batch import PromptBatch


class Engine(Protocol):
    """Runs one exported graph: input tensors by name in, output tensors by name out."""

    device: torch.device

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


class EngineImageEncoder(nn.Module):
    """Stands in for ``ImageEncoderViT``: (B, 3, S, S) -> (B, C, h, w) float32 (h = S / patch size) from an encoder
    engine, for any B (run ``max_images`` at a time)."""

    def __init__(self, engine: Engine, img_size: int, max_images: int) -> None:
        super().__init__()
        self.engine = engine
        self.img_size = img_size
        self.max_images = max_images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        chunks = images.split(self.max_images)
        return torch.cat([self.engine({"images": chunk})["image_embeddings"] for chunk in chunks])


class EnginePredictor(SamPredictor):
    """``SamPredictor`` (``set_image``, ``predict``, ``predict_torch``, ``predict_many``,
    ``set_images``, ``predict_batch``) on an encoder engine and a batched-decoder engine."""

    def __init__(self, sam_model: Sam, encoder: Engine, decoder: Engine, limits: EngineLimits) -> None:
        """
        Args:
            sam_model: the model the engines were built from. Its normalisation
                constants, mask threshold and prompt-encoder sizes are used; its
                networks are not run, and it is not modified.
            encoder: runs the graph of ``export_onnx_encoder`` (input ``images``).
            decoder: runs the graph of ``export_onnx_batched_decoder``.
            limits: the shape limits the engines were built with.
        """
        shell = Sam(
            EngineImageEncoder(encoder, sam_model.image_encoder.img_size, limits.max_images),
            sam_model.prompt_encoder,
            sam_model.mask_decoder,
            pixel_mean=sam_model.pixel_mean.flatten().tolist(),
            pixel_std=sam_model.pixel_std.flatten().tolist(),
        )
        for name in ("pixel_mean", "pixel_std"):
            setattr(shell, name, getattr(shell, name).to(encoder.device))
        shell.mask_threshold = sam_model.mask_threshold
        shell.image_format = sam_model.image_format
        self.decoder = decoder
        self.limits = limits
        super().__init__(shell, prompt_batch_size=limits.max_prompts)

    @property
    def device(self) -> torch.device:
        return self.decoder.device

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``SamPredictor.predict_torch``; low-res logits and IoU are float32."""
        self._require_single_image()
        check_prompt_tensors(point_coords, point_labels, boxes, mask_input, self._mask_size)
        batch = tensor_prompt_batch(point_coords, point_labels, boxes, mask_input)
        image_index = torch.zeros(len(batch.labels), dtype=torch.long, device=self.device)
        low_res_masks, iou_predictions = self._decode(batch, image_index, multimask_output)
        masks = self.model.postprocess_masks(low_res_masks, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou_predictions, low_res_masks

    def _decode(
        self, batch: PromptBatch, image_index: torch.Tensor, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder engine on a packed batch: (P, C, 4h, 4w) logits and (P, C) IoU, C = 3 or 1.

        Prompts are run ``max_prompts`` at a time, on at most ``max_images`` distinct images per call.
        """
        coords, labels, token_mask = _at_least_one_token(batch)
        prompts, tokens = labels.shape
        if tokens > self.limits.max_points:
            raise ValueError(
                f"a prompt has {tokens} tokens (points, box corners, padding point); the engine takes at most "
                f"{self.limits.max_points}: rebuild with a larger EngineLimits.max_points"
            )
        side = self._mask_size
        mask_inputs = batch.mask_inputs if batch.mask_inputs is not None else coords.new_zeros(prompts, 1, side, side)
        has_mask = batch.has_mask.float() if batch.has_mask is not None else coords.new_zeros(prompts)
        low_res = torch.empty(prompts, self.model.mask_decoder.num_mask_tokens, side, side, device=self.device)
        iou = torch.empty(prompts, self.model.mask_decoder.num_mask_tokens, device=self.device)
        images = image_index.unique()
        for first in range(0, len(images), self.limits.max_images):
            group = images[first : first + self.limits.max_images]
            members = torch.isin(image_index, group).nonzero().flatten()
            for chunk in members.split(self.limits.max_prompts):
                outputs = self.decoder(
                    {
                        "image_embeddings": self.features[group],
                        "point_coords": coords[chunk],
                        "point_labels": labels[chunk].float(),
                        "token_mask": token_mask[chunk],
                        "mask_input": mask_inputs[chunk],
                        "has_mask_input": has_mask[chunk],
                        "image_index": torch.searchsorted(group, image_index[chunk]),
                    }
                )
                low_res[chunk] = outputs["low_res_masks"].float()
                iou[chunk] = outputs["iou_predictions"].float()
        selected = slice(1, None) if multimask_output else slice(0, 1)
        return low_res[:, selected], iou[:, selected]


def tensor_prompt_batch(
    point_coords: Optional[torch.Tensor],
    point_labels: Optional[torch.Tensor],
    boxes: Optional[torch.Tensor],
    mask_input: Optional[torch.Tensor],
) -> PromptBatch:
    """The tokens the prompt encoder builds from ``predict_torch``'s tensors (resized frame), as a PromptBatch.

    Points (B, N, 2) with labels (B, N), then either the two corners of the
    (B, 4) boxes (labels 2, 3) or, for points without a box, one padding point
    (label -1). B = 1 when no prompt is given at all, as in ``PromptEncoder``.
    """
    given = [tensor for tensor in (point_coords, boxes, mask_input) if tensor is not None]
    prompts = given[0].shape[0] if given else 1
    device = given[0].device if given else None
    coords = [torch.zeros(prompts, 0, 2, device=device)]
    labels = [torch.zeros(prompts, 0, dtype=torch.long, device=device)]
    if point_coords is not None and point_labels is not None:
        coords.append(point_coords.float())
        labels.append(point_labels.long())
    if boxes is not None:
        coords.append(boxes.reshape(-1, 2, 2).float())
        labels.append(torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], device=device).expand(prompts, 2))
    elif point_coords is not None:
        coords.append(torch.zeros(prompts, 1, 2, device=device))
        labels.append(torch.full((prompts, 1), NOT_A_POINT, device=device))
    has_mask = torch.ones(prompts, dtype=torch.bool, device=device) if mask_input is not None else None
    return PromptBatch(
        coords=torch.cat(coords, dim=1),
        labels=torch.cat(labels, dim=1),
        token_mask=None,
        mask_inputs=mask_input.float() if mask_input is not None else None,
        has_mask=has_mask,
    )


def _at_least_one_token(batch: PromptBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, T, 2) coords, (P, T) labels and (P, T) bool token mask with T >= 1.

    Prompts with no token at all (a mask only) get one masked-out token: the
    engine's profile starts at one token, and a masked token is never attended to.
    """
    coords, labels = batch.coords, batch.labels
    token_mask = batch.token_mask if batch.token_mask is not None else torch.ones_like(labels, dtype=torch.bool)
    if labels.shape[1] == 0:
        coords = coords.new_zeros(len(labels), 1, 2)
        labels = labels.new_full((len(labels), 1), NOT_A_POINT)
        token_mask = torch.zeros_like(labels, dtype=torch.bool)
    return coords, labels, token_mask
