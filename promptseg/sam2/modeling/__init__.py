"""The SAM 2 image network under the official ``sam2.modeling`` paths (:mod:`.backbones`, :mod:`.sam`,
:mod:`.position_encoding`, :mod:`.sam2_base`, :mod:`.sam2_utils`)."""
