"""Moved to ``autobatch._data`` (builder) and ``autobatch._data._tail`` (the shared tail)."""

from autobatch._data import (
    build_dataset,
    has_8bit_pixels,
    normalize_image_size,
    remove_private_cache_folders,
)
from autobatch._data._tail import autotune_options, convert_channels, dataset_options, to_pixels

__all__ = ["autotune_options", "build_dataset", "convert_channels", "dataset_options",
           "has_8bit_pixels", "normalize_image_size", "remove_private_cache_folders", "to_pixels"]
