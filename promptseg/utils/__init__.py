"""``segment_anything.utils`` under its official path: ``amg``, ``onnx`` and ``transforms`` re-export
the official names; the code lives in :mod:`promptseg.amg`, :mod:`promptseg.export` and
:mod:`promptseg.prompts`."""
