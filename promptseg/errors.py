"""Exceptions raised by promptseg. Each subclasses the builtin a user of the official package would catch."""

from __future__ import annotations


class ImageNotSetError(RuntimeError, ValueError):
    """A prediction was requested before ``set_image``/``set_images``.

    A RuntimeError like the official predictor's, and a ValueError like every
    other bad-input error of promptseg.
    """


class UnknownModelTypeError(KeyError, ValueError):
    """A model type that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the requested model."""


class ImageReadError(ValueError):
    """A file that cannot be read as an image: empty, not an image, corrupt, truncated, or over the pixel limit.

    Attributes:
        source: the file (its path, or the name given for bytes) that failed.
        problem: what is wrong with it, in words.
    """

    def __init__(self, source: object, problem: str) -> None:
        super().__init__(f"cannot read image {source}: {problem}")
        self.source = str(source)
        self.problem = problem


class RleError(ValueError):
    """A COCO run-length encoding that is malformed or does not fit its image."""


class UnknownTextError(ValueError):
    """A text prompt or query of which the concept encoder knows no word (nothing would be understood)."""


def optional_module(name: str, needed_for: str, install: str):
    """The module ``name`` (e.g. ``"pycocotools.mask"``), imported on first use.

    Raises:
        ModuleNotFoundError: it is not installed; the message says what needs it (``needed_for``, e.g.
            ``"the annotation server"``) and how to install it (``install``, e.g. ``'pip install "promptseg[annotate]"'``).
    """
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ModuleNotFoundError(f"{needed_for} needs {name.split('.')[0]}: {install}") from error
