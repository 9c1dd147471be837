"""The ImageEncoder seam: the module encoder against the model, and the predictor (and the mask generator
through it) embedding images through the encoder it is given.

The engine encoder runs against the module one in tests/export/test_engine_predictor.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import promptseg
from promptseg.build import construct_sam
from promptseg.encoders import ImageEncoder, ModuleImageEncoder
from tests._support import TINY


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return construct_sam(TINY).eval()


def test_module_encoder_is_the_model_s_preprocess_and_image_encoder(tiny):
    encoder = ModuleImageEncoder(tiny)
    assert isinstance(encoder, ImageEncoder)
    assert (encoder.img_size, encoder.device, encoder.dtype) == (256, torch.device("cpu"), torch.float32)
    image = torch.randint(0, 256, (3, 192, 256), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    preprocessed = encoder.preprocess(image)
    assert torch.equal(preprocessed, tiny.preprocess(image)) and preprocessed.shape == (3, 256, 256)
    with torch.no_grad():
        assert torch.equal(encoder.encode(preprocessed[None]), tiny.image_encoder(preprocessed[None]))
    with pytest.raises(ValueError, match=r"takes preprocessed images \(B, 3, 256, 256\) with B >= 1, got \(3, 256, 256\)"):
        encoder.encode(preprocessed)
    with pytest.raises(ValueError, match=r"got \(1, 3, 192, 256\)"):
        encoder.encode(image[None].float())
    assert repr(encoder) == "ModuleImageEncoder(ImageEncoderViT, img_size=256, device=cpu, dtype=torch.float32)"


class CountingEncoder(ModuleImageEncoder):
    """The module encoder, counting the images it encodes."""

    def __init__(self, model) -> None:
        super().__init__(model)
        self.encoded = 0

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.encoded += len(images)
        return super().encode(images)


def test_predictor_and_generator_embed_through_the_encoder_they_are_given(tiny, images):
    counting = CountingEncoder(tiny)
    predictor = promptseg.SamPredictor(tiny, encoder=counting)
    default = promptseg.SamPredictor(tiny)
    assert isinstance(default.encoder, ModuleImageEncoder) and predictor.encoder is counting
    image = images["dog.jpg"]
    predictor.set_image(image)
    default.set_image(image)
    assert counting.encoded == 1 and torch.equal(predictor.features, default.features)
    predictor.set_images([image, images["truck.jpg"][:100]], batch_size=1)
    assert counting.encoded == 3
    point = {"point_coords": np.array([[100.0, 120.0]]), "point_labels": np.array([1])}
    predictor.set_image(image)
    for ours, theirs in zip(predictor.predict(**point), default.predict(**point)):
        np.testing.assert_array_equal(ours, theirs)

    generator = promptseg.SamAutomaticMaskGenerator(tiny, points_per_side=2)
    assert isinstance(generator.predictor.encoder, ModuleImageEncoder)
    generator.predictor.encoder = counting
    generator.generate(image[:100, :150])
    assert counting.encoded == 5


def test_predictor_says_which_encoder_and_decoder_run(tiny, images):
    predictor = promptseg.SamPredictor(tiny)
    assert repr(predictor) == (
        "SamPredictor(encoder=ModuleImageEncoder(ImageEncoderViT, img_size=256, device=cpu, dtype=torch.float32), "
        "decoder=AutoDecoder(backend='auto'), images_set=0)"
    )
    predictor.set_image(images["dog.jpg"])
    assert repr(predictor).endswith("images_set=1)")


def test_predictor_rejects_an_encoder_it_cannot_use(tiny):
    with pytest.raises(TypeError, match="encoder must be a promptseg.encoders.ImageEncoder, got Sam"):
        promptseg.SamPredictor(tiny, encoder=tiny)

    class Larger(ModuleImageEncoder):
        @property
        def img_size(self) -> int:
            return 512

    with pytest.raises(ValueError, match="the encoder takes 512x512 images, but the model's prompts and masks are in a 256-pixel frame"):
        promptseg.SamPredictor(tiny, encoder=Larger(tiny))
