"""SAM's heads in SAM 2: prompt encoder, mask decoder and its two-way transformer."""
