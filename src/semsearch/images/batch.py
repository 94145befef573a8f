"""Decode and preprocess a batch of image documents in worker threads, once for all channels.

The Pipeline calls each channel's ``encode`` on the same batch; the loader submits every
image to a thread pool on the first call and the channels read the same futures, so a file
is decoded once per batch, the CLIP channel can run the model on the first sub-batch while
later images are still decoding, and Pillow's C code (which releases the GIL) runs in
parallel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semsearch.config import ImageSettings
from semsearch.documents import Document
from semsearch.images.hashing import HashInputs, grey_hash_inputs, hash_inputs
from semsearch.images.io import ImageError, RootGuard, load_grey, load_image
from semsearch.images.resample import NumpyBlasThreads

logger = logging.getLogger(__name__)

#: smallest side kept by fast JPEG decoding: above CLIP's 224 px input and 8x pHash's 32 px
FAST_DECODE_SIDE = 256
#: the same when only hashes are computed (no CLIP): 2x pHash's 32 px, luma only
FAST_HASH_DECODE_SIDE = 64


@dataclass
class Prepared:
    hashes: HashInputs
    clip: Any = None  # preprocessed CLIP tensor, dropped once embedded


class ImageBatchLoader:
    def __init__(
        self,
        settings: ImageSettings | None = None,
        *,
        roots: Sequence[Path] | None = None,
        clip_preprocess: Callable[[Any], Any] | None = None,
    ) -> None:
        self.settings = settings or ImageSettings()
        self.roots = list(roots or self.settings.roots or [Path.cwd()])
        self._guard = RootGuard(self.roots)
        self.clip_preprocess = clip_preprocess
        self._pool: ThreadPoolExecutor | None = None
        self._blas = NumpyBlasThreads(1)  # the workers are the parallelism (see resample.py)
        self._batch: dict[tuple[str, str], Future[Prepared]] = {}

    def _prepare_one(self, image: str) -> Prepared:
        path = self._guard.resolve(image)
        fast, turbo, limit = self.settings.fast_decode, self.settings.jpeg_decoder == "auto", self.settings.max_pixels
        if self.clip_preprocess is None:  # hashes only: the grey pixels, at >= 64 px with fast_decode
            grey = load_grey(path, max_pixels=limit, draft=FAST_HASH_DECODE_SIDE if fast else None, turbo=turbo)
            return Prepared(grey_hash_inputs(grey))
        img = load_image(path, max_pixels=limit, draft=FAST_DECODE_SIDE if fast else None, turbo=turbo)
        try:
            clip = self.clip_preprocess(img)
        except Exception as e:  # noqa: BLE001 - a transform failure is this file's failure
            raise ImageError(image, f"CLIP preprocessing failed: {e}") from e
        return Prepared(hash_inputs(img), clip)

    def futures(self, docs: Sequence[Document]) -> list[Future[Prepared]]:
        """One future per doc (same order); reused across channels for the same batch."""
        if self._pool is None:
            self._blas.__enter__()
            self._pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="semsearch-img")
        batch = {}
        for d in docs:
            if d.image is None:
                raise ValueError(f"document {d.id!r} has no image")
            key = (d.id, d.image)
            batch[key] = self._batch.get(key) or self._pool.submit(self._prepare_one, d.image)
        self._batch = batch
        return [batch[(d.id, d.image)] for d in docs]  # type: ignore[index]

    def prepared(self, docs: Sequence[Document]) -> list[Prepared | ImageError]:
        """Every doc's outcome once the whole batch is done (same order). Waiting once, not
        future by future, spares the workers a wake-up of this thread per image competing
        for the GIL (12-15% of hash-only throughput on 2 cores)."""
        futs = self.futures(docs)
        wait(futs)
        return [result_or_error(f) for f in futs]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._blas.__exit__(None, None, None)
        self._batch = {}


def result_or_error(fut: Future[Prepared]) -> Prepared | ImageError:
    try:
        return fut.result()
    except ImageError as e:
        return e
    except Exception as e:  # noqa: BLE001 - anything else a decoder throws is this file's
        logger.debug("unexpected image failure", exc_info=True)
        return ImageError("?", f"{type(e).__name__}: {e}")
