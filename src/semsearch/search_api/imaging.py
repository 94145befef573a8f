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
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from semsearch.documents import Document, SearchResult
from semsearch.errors import BadInput, DocumentNotFound
from semsearch.images.io import ImageTooLarge, decode_image, load_image, resolve_image_path
from semsearch.search_api.errors import PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from PIL import Image

    from semsearch.search_api.service import IndexService

logger = logging.getLogger(__name__)

#: upload media types accepted by image search -> the Pillow decoder each may use
MEDIA_TYPES = {
    "image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP",
    "image/bmp": "BMP", "image/tiff": "TIFF",
}
HASHES = ("phash", "dhash", "phash_mirror")


def decode_upload(data: bytes, filename: str, media_type: str | None, svc: IndexService) -> Image.Image:
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
    """Image operations of one :class:`IndexService` (it owns the locks and the index)."""

    def __init__(self, svc: IndexService) -> None:
        self.svc = svc
        self._channels: list | None = None
        self._init = threading.Lock()
        self._encoding = threading.Lock()  # the loader's per-batch futures are not shared

    @property
    def index(self) -> Any:
        return self.svc.index

    def features(self) -> dict[str, bool]:
        vecs = self.index.vectors
        return {
            "image_search": "image" in vecs or any(h in vecs for h in ("phash", "dhash")),
            "image_text": "image" in vecs,
            "duplicates": "phash" in vecs,
            "image_upload": bool(self.svc.settings.images.roots),
        }

    # -- reads --------------------------------------------------------------------------
    def search(self, img: Image.Image, *, k: int, channels: Sequence[str] | None,
               max_distance: int | None) -> SearchResult:
        with self.svc.rw.read():
            res = self.svc.searcher.search_by_image(img, k=k, channels=channels, max_distance=max_distance)
        res.hits = [h for h in res.hits if h.document is not None]  # deleted, not yet synced
        return res

    def duplicates(self, max_distance: int, mirrored: bool) -> dict[str, Any]:
        from semsearch.images.dedup import find_duplicates

        # find_duplicates compacts the hash index in place: exclusive, like a sync
        with self.svc.rw.write():
            return find_duplicates(self.index, max_distance, mirrored=mirrored).as_json()

    def thumbnail(self, doc_id: str, size: int) -> bytes:
        """JPEG thumbnail of an indexed document's image (only a stored document's image,
        only inside ``images.roots``)."""
        doc = self.index.get([doc_id]).get(doc_id)
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

    # -- writes -------------------------------------------------------------------------
    def channels(self) -> list:
        """The bulk pipeline's image channels (CLIP when the index has a CLIP channel or no
        image channel yet, as ``semsearch index --images`` does), declared on the index."""
        with self._init:
            if self._channels is None:
                from semsearch.images.channels import image_channels

                have = self.index.manifest.channels
                clip = "image" in have or not any(h in have for h in HASHES)
                chans = image_channels(self.svc.settings, roots=self._roots(), clip=clip)
                with self.svc._writer, self.svc.rw.write():
                    for ch in chans:
                        self.index.ensure_channel(ch.name, dim=ch.dim, encoder=ch.encoder_name,
                                                  backend=ch.backend)
                clip_enc = next((c.encoder for c in chans if c.name == "image"), None)
                if clip_enc is not None and self.svc.searcher._clip is None:
                    self.svc.searcher._clip = clip_enc  # one CLIP model for writes and searches
                self._channels = chans
            return self._channels

    def encode(self, docs: Sequence[Document]) -> dict[str, tuple[np.ndarray, list[Document]]]:
        """Vectors of the image documents among ``docs`` in every image channel; a file that
        cannot be used rejects the batch with a message naming each document and problem."""
        with_image = [d for d in docs if d.image is not None]
        if not with_image:
            return {}
        self._roots()
        out: dict[str, tuple[np.ndarray, list[Document]]] = {}
        problems: dict[str, str] = {}
        for ch in self.channels():
            with self._encoding:
                mat, bad = ch.encode(with_image)
            for d, reason in bad:
                problems.setdefault(d.id, reason)
            out[ch.name] = (mat, [d for d in with_image if d.id not in {b.id for b, _ in bad}])
        if problems:
            listed = "; ".join(f"document {i!r}: {r}" for i, r in list(problems.items())[:20])
            raise BadInput(f"{len(problems)} image(s) cannot be used, nothing was written: {listed}")
        return out
