"""``segment_anything.utils.onnx`` under its official path; the code lives in :mod:`promptseg.export.onnx_decoder`.

``SamOnnxModel(model, return_single_mask, use_stability_score=False, return_extra_metrics=False)``
is :class:`promptseg.export.onnx_decoder.OfficialCompatibleDecoder`: the official inputs
``(image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size)`` and
outputs, traced by ``torch.onnx.export`` as the official ``scripts/export_onnx_model.py`` does.
:func:`promptseg.export.export_onnx_decoder` runs that export in one call.
"""

from promptseg.export.onnx_decoder import OfficialCompatibleDecoder as SamOnnxModel

__all__ = ["SamOnnxModel"]
