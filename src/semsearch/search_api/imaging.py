"""The server's image side: decoding uploads (limits first), search by image, near-duplicate
groups, image documents in batch upserts, and thumbnails of indexed images.

Everything image-shaped goes through :mod:`semsearch.images`: uploads are decoded by
:func:`~semsearch.images.io.decode_image` (the loader the bulk pipeline uses, pixel count
checked from the header before decoding), document images by the bulk pipeline's channels
(:func:`~semsearch.images.channels.image_channels`), whose loader only reads files that
resolve inside ``images.roots``. No URL is ever fetched.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

from semsearch.collection import HASH_CHANNELS
from semsearch.errors import BadInput, DocumentNotFound
from semsearch.images.io import ImageTooLarge, decode_image, load_image, resolve_image_path
from semsearch.search_api.errors import PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from PIL import Image

    from semsearch.collection import Collection

logger = logging.getLogger(__name__)

#: upload media types accepted by image search -> the Pillow decoder each may use
MEDIA_TYPES = {
    "image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP",
    "image/bmp": "BMP", "image/tiff": "TIFF",
}


def decode_upload(data: bytes, filename: str, media_type: str | None, svc: Collection) -> Image.Image:
    """An uploaded file as RGB: 413 over the byte or pixel limit (pixels read from the
    header, before decoding), 415 for a media type that is not a supported image type, 400
    (:class:`~semsearch.images.io.ImageError`) for bytes that do not decode as that type."""
    api = svc.settings.api
    if len(data) > api.max_upload_bytes:
        raise PayloadTooLarge(f"upload {filename!r} is larger than the limit of {api.max_upload_bytes} bytes")
    mtype = (media_type or "").split(";")[0].strip().lower()
    if mtype not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"upload {filename!r} has media type {mtype or '(none)'!r}; send one of {sorted(MEDIA_TYPES)}")
    if not data:
        raise BadInput(f"upload {filename!r} is empty (0 bytes)")
    limit = min(api.max_image_pixels, svc.settings.images.max_pixels)
    try:
        return decode_image(io.BytesIO(data), f"upload {filename!r} ({mtype})", max_pixels=limit,
                            formats=[MEDIA_TYPES[mtype]], limit_name="api.max_image_pixels")
    except ImageTooLarge as e:
        raise PayloadTooLarge(str(e)) from e


class ImageSide:
    """The HTTP-only image operations over one :class:`~semsearch.collection.Collection`
    (which owns the locks, the index and the image channels)."""

    def __init__(self, svc: Collection) -> None:
        self.svc = svc

    def features(self) -> dict[str, bool]:
        vecs = self.svc.channels
        return {
            "image_search": "image" in vecs or any(h in vecs for h in HASH_CHANNELS),
            "image_text": "image" in vecs,
            "duplicates": "phash" in vecs,
            # the search page sends no key: it offers the scan only where it needs none
            "duplicates_need_key": self.svc.settings.api.duplicates_need_key,
            "image_upload": bool(self.svc.settings.images.roots),
        }

    def thumbnail(self, doc_id: str, size: int) -> bytes:
        """JPEG thumbnail of an indexed document's image (only a stored document's image,
        only inside ``images.roots``)."""
        doc = self.svc.get([doc_id]).get(doc_id)
        if doc is None:
            raise DocumentNotFound(f"document {doc_id!r} is not in the index")
        if doc.image is None:
            raise DocumentNotFound(f"document {doc_id!r} has no image")
        path = resolve_image_path(doc.image, self._roots())
        img = load_image(path, max_pixels=self.svc.settings.images.max_pixels)
        img.thumbnail((size, size))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return buf.getvalue()

    def _roots(self) -> list:
        roots = self.svc.settings.images.roots
        if not roots:
            raise BadInput("the server has no image roots (set SEMSEARCH_IMAGES__ROOTS): image files are not read")
        return list(roots)
