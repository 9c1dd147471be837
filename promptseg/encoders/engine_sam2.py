"""``Sam2EngineImageEncoder``: a :class:`promptseg.encoders.ImageEncoder` for SAM 2 models that runs the
exported encoder graph of ``promptseg.export.export_sam2_onnx_encoder`` in an engine (ONNX Runtime's
:class:`~promptseg.encoders.onnxruntime.OnnxRuntimeEngine`, or TensorRT). The decoder side is
:class:`promptseg.decoders.engine_sam2.Sam2EngineDecoder`."""

from __future__ import annotations

import torch

from promptseg.encoders.engine import Engine, EngineImageEncoder
from promptseg.encoders.features import MultiScaleFeatures
from promptseg.encoders.sam2 import PIXEL_MEAN, PIXEL_STD, normalize_unit_rgb
from promptseg.prompts.frames import SquareResize
from promptseg.sam2.modeling.sam2_base import SAM2Base


class Sam2EngineImageEncoder(EngineImageEncoder):
    """(B, 3, S, S) images in SAM 2's frame -> :class:`MultiScaleFeatures` from an encoder engine
    (``export_sam2_onnx_encoder``), ``max_images`` per run; preprocessing is
    :func:`promptseg.encoders.sam2.normalize_unit_rgb` on the engine's device. Engine, sizes and
    ``repr`` as :class:`~promptseg.encoders.engine.EngineImageEncoder`."""

    def __init__(self, engine: Engine, img_size: int, max_images: int, dtype: torch.dtype = torch.float32) -> None:
        """
        Args:
            engine: runs the encoder graph (input ``images``; outputs ``image_embeddings``,
                ``high_res_feats_0``, ``high_res_feats_1``).
            img_size: the side S of the graph's input; max_images: the most images per run.
            dtype: the dtype of the preprocessed images handed to the engine.
        """
        super().__init__(engine, img_size, max_images, torch.tensor(PIXEL_MEAN), torch.tensor(PIXEL_STD), dtype)

    @classmethod
    def for_model(cls, engine: Engine, model: SAM2Base, max_images: int) -> "Sam2EngineImageEncoder":  # type: ignore[override]
        """The encoder engine exported from ``model`` (its input size and dtype)."""
        return cls(engine, model.image_size, max_images, model.dtype)

    @property
    def frame(self) -> SquareResize:
        return SquareResize(self.img_size)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """(..., 3, S, S) float RGB on a 0..1 scale -> normalised, in :attr:`dtype` on the engine's device."""
        return normalize_unit_rgb(image.to(self.device)).to(self.dtype)

    def encode(self, images: torch.Tensor) -> MultiScaleFeatures:  # type: ignore[override]
        """(B, 3, S, S) preprocessed images -> their :class:`MultiScaleFeatures`, ``max_images`` per engine run."""
        self.check_images(images)
        outputs = [self.engine({"images": chunk}) for chunk in images.split(self.max_images)]
        levels = [torch.cat([output[name] for output in outputs]) for name in ("high_res_feats_0", "high_res_feats_1")]
        return MultiScaleFeatures(torch.cat([output["image_embeddings"] for output in outputs]), tuple(levels))
