"""The SAM 2 image encoder: the Hiera trunk (:mod:`.hieradet`), the FPN neck (:mod:`.image_encoder`)."""
