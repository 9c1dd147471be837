"""The official ``sam2.utils`` paths used by the image API: :mod:`.transforms` (the image frame and
mask post-processing) and :mod:`.amg` (the mask generator's helpers)."""
