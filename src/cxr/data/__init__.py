"""Data: reading images, class-folder datasets, splits, the decode cache and the pixel pipeline."""
