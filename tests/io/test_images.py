"""promptseg.io's image reader: one EXIF rule, pixel limits, truncation, one clear error; and the listing."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from promptseg.errors import ImageReadError
from promptseg.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageSize,
    decode_image,
    image_size,
    list_images,
    read_image,
)
from promptseg.io.images import MAX_PIXELS_ENVIRONMENT

ORIENTATION = 0x0112


def _pixels(height: int = 24, width: int = 40) -> np.ndarray:
    """An asymmetric (H, W, 3) picture: every orientation of it is different."""
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([rows * 255 // height, columns * 255 // width, (rows * 7 + columns * 3) % 256], -1).astype(np.uint8)


def _save(path: Path, pixels: np.ndarray, orientation: int | None = None, **options) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **options)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height RGB pixels, with no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b""))
    return path


# ----------------------------------------------------------------- orientation
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_exif_transpose_does(tmp_path, orientation):
    path = _save(tmp_path / f"o{orientation}.png", _pixels(), orientation)
    with Image.open(path) as opened:
        expected = np.array(ImageOps.exif_transpose(opened).convert("RGB"))
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == expected.shape and image.flags.c_contiguous
    np.testing.assert_array_equal(image, expected)
    assert image_size(path) == ImageSize(expected.shape[1], expected.shape[0])
    if orientation in (5, 6, 7, 8):
        assert image.shape[:2] == (40, 24), "a quarter turn swaps the sides"


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_jpeg_orientation_and_decode_image_agree_with_read_image(tmp_path, orientation):
    path = _save(tmp_path / "photo.jpg", _pixels(), orientation, quality=95)
    with Image.open(path) as opened:
        expected = np.array(ImageOps.exif_transpose(opened).convert("RGB"))
    np.testing.assert_array_equal(read_image(path), expected)
    np.testing.assert_array_equal(decode_image(path.read_bytes(), "s3://bucket/photo.jpg"), expected)
    assert image_size(path) == ImageSize(expected.shape[1], expected.shape[0])


def test_out_of_range_orientation_is_ignored(tmp_path):
    path = _save(tmp_path / "odd.png", _pixels(), 9)
    np.testing.assert_array_equal(read_image(path), _pixels())
    assert image_size(path) == (40, 24)


def test_image_size_decodes_no_pixels(tmp_path, monkeypatch):
    """A listing reads headers only: PngImageFile.getexif would decode the whole file, and load is never called."""
    path = _save(tmp_path / "turned.png", _pixels(), 6)

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("image_size decoded pixels")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    assert image_size(path) == ImageSize(24, 40)


def test_modes_are_converted_to_rgb(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(_pixels()[..., 0]).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([_pixels(), np.full((24, 40), 128, np.uint8)])).save(rgba)
    assert read_image(grey).shape == (24, 40, 3)
    np.testing.assert_array_equal(read_image(grey)[..., 1], _pixels()[..., 0])
    np.testing.assert_array_equal(read_image(rgba), _pixels())


# ---------------------------------------------------------------- bad files
def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a pattern its error must match)."""
    jpeg = _save(folder / "whole.jpg", _pixels(64, 64), quality=95).read_bytes()
    png = _save(folder / "whole.png", _pixels(64, 64)).read_bytes()
    files = {
        "zero-byte": ("empty.png", b"", "empty \\(0 bytes\\)"),
        "not an image": ("notes.jpg", b"just some text, not a picture", "not an image"),
        "corrupt PNG": ("broken.png", b"\x89PNG\r\n\x1a\n not an image", "not an image"),
        "truncated JPEG": ("cut.jpg", jpeg[: len(jpeg) // 2], "truncated"),
        "truncated PNG": ("cut.png", png[: len(png) // 2], "truncated"),
    }
    bad = {name: (folder / file, pattern) for name, (file, data, pattern) in files.items()}
    for name, (file, data, _) in files.items():
        (folder / file).write_bytes(data)
    bad["header only"] = (_png_header_only(folder / "claims.png", 3000, 2000), "truncated")
    bad["huge header"] = (_png_header_only(folder / "huge.png", 12000, 12000), "over the limit")
    bad["decompression bomb"] = (_png_header_only(folder / "bomb.png", 100_000, 100_000), "over .*limit")
    return bad


BAD = ["zero-byte", "not an image", "corrupt PNG", "truncated JPEG", "truncated PNG", "header only", "huge header",
       "decompression bomb"]


@pytest.mark.parametrize("case", BAD)
def test_an_unreadable_file_raises_one_clear_error_naming_it(tmp_path, case):
    path, pattern = _bad_files(tmp_path)[case]
    with pytest.raises(ImageReadError, match=pattern) as caught:
        read_image(path)
    assert str(path) in str(caught.value) and caught.value.source == str(path)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ImageReadError, match=pattern) as caught:
        decode_image(path.read_bytes(), "s3://bucket/x")
    assert "s3://bucket/x" in str(caught.value)


@pytest.mark.parametrize("case", ["zero-byte", "not an image", "corrupt PNG", "huge header", "decompression bomb"])
def test_image_size_refuses_what_its_header_shows_is_bad(tmp_path, case):
    path, pattern = _bad_files(tmp_path)[case]
    with pytest.raises(ImageReadError, match=pattern):
        image_size(path)


def test_a_truncated_body_is_found_only_by_reading(tmp_path):
    path, _ = _bad_files(tmp_path)["header only"]
    assert image_size(path) == (3000, 2000)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = _save(tmp_path / "small.png", _pixels())  # 960 pixels
    with pytest.raises(ImageReadError, match="960 pixels is over the limit of 959"):
        read_image(path, max_pixels=959)
    assert read_image(path, max_pixels=960).shape == (24, 40, 3)
    monkeypatch.setenv(MAX_PIXELS_ENVIRONMENT, "100")
    with pytest.raises(ImageReadError, match=MAX_PIXELS_ENVIRONMENT):
        image_size(path)
    monkeypatch.setenv(MAX_PIXELS_ENVIRONMENT, "lots")
    with pytest.raises(ValueError, match="positive integer"):
        read_image(path)
    monkeypatch.delenv(MAX_PIXELS_ENVIRONMENT)
    assert DEFAULT_MAX_PIXELS >= 12000 * 9000 > 0  # a 108-megapixel phone photo is read


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image(tmp_path / "nothing.jpg")
    with pytest.raises(FileNotFoundError, match="image not found"):
        image_size(tmp_path)


def test_formats_pillow_would_hand_to_other_programs_are_not_tried(tmp_path):
    eps = tmp_path / "figure.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageReadError, match="not an image"):
        read_image(eps)


# -------------------------------------------------------------------- listing
def test_list_images_by_name_and_suffix(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.txt", "d.webp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "d.webp"]
    assert list_images(tmp_path / "a.jpg") == [tmp_path / "a.jpg"]
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        list_images(tmp_path / "a.jpg", allow_file=False)
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path / "folder.jpg")
    assert ".tiff" in IMAGE_SUFFIXES


def test_list_images_contained_leaves_out_links_outside(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (inside / "a.png").write_bytes(b"x")
    (outside / "secret.png").write_bytes(b"x")
    (inside / "link.png").symlink_to(outside / "secret.png")
    assert [p.name for p in list_images(inside, allow_file=False)] == ["a.png", "link.png"]
    assert [p.name for p in list_images(inside, allow_file=False, contained=True)] == ["a.png"]
