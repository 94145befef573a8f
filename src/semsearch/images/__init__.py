"""Images as documents: robust loading, perceptual hashes, directory ingestion, dedup."""

from semsearch.images.io import ImageError, load_image, resolve_image_path

__all__ = ["ImageError", "load_image", "resolve_image_path"]
