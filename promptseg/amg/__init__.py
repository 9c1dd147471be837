"""Automatic mask generation, one concern per module: point grids and crops (:mod:`.grids`),
decoding and measuring masks (:mod:`.decoding`), quality filters (:mod:`.filters`), duplicate
removal (:mod:`.nms`), candidate storage (:mod:`.candidates`), small-region clean-up
(:mod:`.regions`) and run-length encoding (:mod:`.rle`). The generator itself is
:class:`promptseg.SamAutomaticMaskGenerator`."""
