"""Automatic mask generation, one concern per module: point grids and crop boxes (:mod:`.grids`),
moving results out of a crop's frame (:mod:`.crops`), decoding and measuring masks
(:mod:`.decoding`), quality filters (:mod:`.filters`), duplicate removal (:mod:`.nms`), candidate
storage (:mod:`.candidates`), small-region clean-up (:mod:`.regions`) and run-length encoding
(:mod:`.rle`); :mod:`.batching` holds the official generator's batching helpers. The generator
itself is :class:`promptseg.SamAutomaticMaskGenerator`; the official helper names are in
:mod:`promptseg.utils.amg`."""
