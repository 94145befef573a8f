"""One vector channel of one immutable segment: the raw rows (``vectors.<channel>.rows`` in the
segment's array container, memory-mapped) plus, for segments large enough to need one, an ANN
index built once (``<channel>.faiss``, a file of its own: see segments/container.py).

Row ``i`` belongs to the segment's ordinal ``i``; ``present`` says which ordinals have a vector
in this channel (a text-only document has none in an image channel). A channel whose
documents were split into passages (encoders/passages.py) holds several rows per document
instead: ``vectors.<channel>.owners`` maps each row to its ordinal (rows of one document are
contiguous and in passage order; absent documents have no row), and only segments holding
a document of more than one passage have it. Searches take an
``allow`` mask (live documents and the filter, per ordinal: a deleted or filtered-out
document takes all its passages with it) and are:

* exact (one matrix product over the allowed rows) when the segment is below
  ``vector.faiss.exact_below`` documents, when the factory is ``Flat``, or when the mask
  selects at most ``exact_below`` rows (Lucene does the same for a selective filter: exact
  search over the filtered set beats a graph walk that rejects most of what it visits);
* otherwise an ANN search with the mask pushed into FAISS as an ``IDSelectorBitmap``.

ANN ids are ordinals (``IndexIDMap`` over the present rows), or row numbers with passages.
Passage rows are aggregated per document (its best passage's score, or the sum of its top
``n``); an ANN search over-fetches rows until it has ``k`` documents. IVF/PQ factories are trained once
per channel on a sample of the whole store (see :func:`train_template`), and the trained but
empty template is cloned for each segment.
"""

from __future__ import annotations

import errno
import functools
import logging
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import FaissSettings
from semsearch.errors import BackendUnavailable, BadInput, IndexIncompatible
from semsearch.indexer.segments.container import ArrayFile, ArrayWriter

logger = logging.getLogger(__name__)

#: Run in a child process by :func:`probe_gpu`: a small float and binary flat index copied to
#: GPU 0, searched, and compared with the same search on the CPU. A FAISS GPU build without
#: kernels for the GPU at hand does not fail cleanly: faiss-gpu-cu12 1.14.1 on an H200
#: (2026-12-04, docs/gpu.md) aborted the process at the first float search ("CUDA error 209
#: no kernel image is available for execution on the device") and returned garbage distances
#: from GpuIndexBinaryFlat with no error at all. Neither can be caught in-process.
GPU_PROBE = """
import faiss, numpy as np
rng = np.random.default_rng(0)
x = rng.standard_normal((2000, 32), dtype=np.float32)
cpu = faiss.IndexFlatIP(32); cpu.add(x)
res = faiss.StandardGpuResources()
gpu = faiss.index_cpu_to_gpu(res, 0, cpu)
(dg, ig), (dc, ic) = gpu.search(x[:20], 5), cpu.search(x[:20], 5)
# each query finds itself first; scores equal up to rounding (near-ties may swap ranks)
if not ((ig[:, 0] == ic[:, 0]).all() and np.allclose(dg, dc, rtol=1e-3, atol=1e-3)):
    raise SystemExit("GPU float search disagrees with the CPU")
c = rng.integers(0, 256, (2000, 8), dtype=np.uint8)
b = faiss.IndexBinaryFlat(64); b.add(c)
if not (faiss.GpuIndexBinaryFlat(res, b).search(c[:20], 5)[0] == b.search(c[:20], 5)[0]).all():
    raise SystemExit("GPU binary search disagrees with the CPU")
print("ok")
"""


def probe_gpu(code: str = GPU_PROBE, timeout: float = 180) -> str:
    """Empty when FAISS's GPU search runs here and agrees with the CPU, else why not. Runs
    ``code`` in a child process, since a FAISS build without kernels for this GPU aborts
    the process that tries it (see :data:`GPU_PROBE`)."""
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the FAISS GPU check did not finish in {timeout:.0f} s"
    if r.returncode == 0 and r.stdout.strip().endswith("ok"):
        return ""
    lines = [ln.strip() for ln in (r.stderr + "\n" + r.stdout).splitlines() if ln.strip()]
    # FAISS's own message (the CUDA error) says more than the traceback's last line
    detail = next((ln for ln in lines if "error" in ln.lower() and "Fatal Python" not in ln), lines[-1] if lines else "")
    how = f"killed by {signal.Signals(-r.returncode).name}" if r.returncode < 0 else f"exit status {r.returncode}"
    return f"the FAISS GPU check failed ({how}): {detail[:400]}"


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[int, str]:
    """(GPUs FAISS can search on, why none when 0); checked once per process."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):  # faiss-cpu: get_num_gpus() is 0 there too
        return 0, "this FAISS build has no GPU support (faiss-cpu; install semsearch[gpu])"
    n = int(faiss.get_num_gpus())
    if n == 0:
        return 0, "FAISS sees no CUDA GPU"
    why = probe_gpu()
    if why:
        logger.warning("FAISS searches stay on the CPU: %s", why)
        return 0, why
    return n, ""


def gpu_count() -> int:
    return gpu_status()[0]


def uses_gpu(settings: FaissSettings) -> bool:
    return settings.gpu != "never" and gpu_count() > 0


def require_gpu(settings: FaissSettings) -> bool:
    """:func:`uses_gpu` for a search: ``gpu="always"`` where FAISS cannot use a GPU raises
    instead of quietly searching on the CPU."""
    if settings.gpu == "always" and gpu_count() == 0:
        raise BackendUnavailable(f"vector.faiss.gpu is 'always' but FAISS cannot search on a GPU here: "
                                 f"{gpu_status()[1]} (set it to 'auto' to fall back to the CPU)")
    return uses_gpu(settings)


def resolve_factory(factory: str, n_vectors: int) -> str:
    """``{nlist}`` in a factory string becomes a list count fit for ``n_vectors``
    (4 * sqrt(n), a power of two between 16 and 65536, the usual FAISS guidance)."""
    if "{nlist}" not in factory:
        return factory
    nlist = int(min(65536, max(16, 2 ** round(np.log2(4 * np.sqrt(max(n_vectors, 1)))))))
    return factory.replace("{nlist}", str(nlist))


def check_factory(dim: int, factory: str) -> None:
    """Refuse a factory string FAISS cannot build, when a channel is declared (not at the
    first refresh, after writes were acknowledged)."""
    import faiss

    try:
        faiss.index_factory(dim, resolve_factory(factory, 10_000), faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise BadInput(f"invalid FAISS factory string {factory!r}: {e}") from e


def needs_training(factory: str) -> bool:
    return bool(re.search(r"IVF|PQ|SQ|LSH|RaBitQ", factory))


def train_template(dim: int, factory: str, sample: np.ndarray) -> Any:
    """A trained, empty FAISS index of ``factory`` (inner product) from ``sample``."""
    import faiss

    try:
        idx = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise BadInput(f"invalid FAISS factory string {factory!r}: {e}") from e
    ivf = faiss.try_extract_index_ivf(idx)
    need = max(ivf.nlist if ivf is not None else 1, 1)
    if len(sample) < need:
        raise BadInput(
            f"FAISS index {factory!r} must be trained on at least {need} vectors but the index "
            f"holds {len(sample)}: choose a smaller nlist (or '{{nlist}}')"
        )
    idx.train(np.ascontiguousarray(sample, dtype=np.float32))
    return idx


def pack_passages(per_doc: list[np.ndarray | None], dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(rows, present, owners)`` of documents given as their passages' vectors (None: no
    vector in the channel). Without a document of several passages: one row per ordinal
    (zeros where absent) and no owners, the layout of a channel without passages."""
    present = np.array([p is not None and len(p) > 0 for p in per_doc], dtype=bool)
    counts = np.array([len(p) if p is not None else 0 for p in per_doc], dtype=np.int64)
    if not (counts > 1).any():
        rows = np.zeros((len(per_doc), dim), np.float32)
        for o in np.flatnonzero(present):
            rows[o] = per_doc[o][0]
        return rows, present, None
    rows = np.concatenate([p for p in per_doc if p is not None and len(p)]).astype(np.float32, copy=False)
    return rows, present, np.repeat(np.arange(len(per_doc), dtype=np.int32), counts)


class _Owned:
    """A read-only array interface over memory owned by a FAISS index, which it keeps alive
    (the array made from it holds this object as its base)."""

    def __init__(self, view: np.ndarray, owner: Any) -> None:
        iface = dict(view.__array_interface__)
        iface["data"] = (iface["data"][0], True)
        self.__array_interface__ = iface
        self._owner = owner


def _rows_in_ann(ann: Any, present: np.ndarray, owners: np.ndarray | None) -> np.ndarray | None:
    """The raw rows as an ``(n_rows, dim)`` float32 array over the ANN index's own storage,
    without a copy, when the index is ``IndexIDMap(IndexHNSW over IndexFlat)`` holding every
    row in order (a segment whose rows all have a vector: every ordinal's, or with passages
    every passage row); None otherwise."""
    import faiss

    n = len(present) if owners is None else len(owners)
    if n == 0 or (owners is None and not bool(np.all(present))) or not isinstance(ann, faiss.IndexIDMap):
        return None
    inner = faiss.downcast_index(ann.index)
    if not isinstance(inner, faiss.IndexHNSW):
        return None
    storage = faiss.downcast_index(inner.storage)
    if type(storage) not in (faiss.IndexFlat, faiss.IndexFlatIP, faiss.IndexFlatL2) or storage.ntotal != n:
        return None
    if not np.array_equal(faiss.vector_to_array(ann.id_map), np.arange(n)):
        return None
    view = faiss.rev_swig_ptr(storage.get_xb(), n * storage.d).reshape(n, storage.d)
    return np.asarray(_Owned(view, ann))


class VectorSegment:
    def __init__(self, vectors: np.ndarray, present: np.ndarray, ann: Any = None,
                 owners: np.ndarray | None = None) -> None:
        self.vectors = vectors
        self.present = present
        self.ann = ann
        #: row -> ordinal when documents have several passages (None: row = ordinal)
        self.owners = owners
        self._gpu: Any = None  # a GPU copy for searching, made on first use where there is one
        self._starts: np.ndarray | None = None

    @property
    def n_docs(self) -> int:
        return len(self.present)

    @property
    def starts(self) -> np.ndarray:
        """With owners: the first row of each ordinal (``n_docs + 1`` bounds)."""
        if self._starts is None:
            self._starts = np.searchsorted(self.owners, np.arange(self.n_docs + 1)).astype(np.int64)
        return self._starts

    def rows_of(self, ordinal: int) -> np.ndarray:
        """The vectors of one document: ``(n_passages, dim)`` (one row without passages)."""
        if self.owners is None:
            return np.asarray(self.vectors[ordinal : ordinal + 1])
        return np.asarray(self.vectors[self.starts[ordinal] : self.starts[ordinal + 1]])

    def passages_of(self, ordinal: int) -> int:
        if self.owners is None:
            return int(self.present[ordinal])
        return int(self.starts[ordinal + 1] - self.starts[ordinal])

    def take(self, ordinals: np.ndarray) -> list[np.ndarray | None]:
        """The documents ``ordinals`` as :func:`pack_passages` takes them (merges)."""
        return [self.rows_of(o) if self.present[o] else None for o in ordinals.tolist()]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def build(cls, vectors: np.ndarray, present: np.ndarray, settings: FaissSettings,
              template: Any = None, owners: np.ndarray | None = None) -> VectorSegment:
        """``template``: a trained empty index to clone (IVF/PQ), or None; ``owners``: the
        ordinal of each row when documents have several passages."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise BadInput("vectors contain NaN or infinity")
        seg = cls(vectors, np.asarray(present, dtype=bool),
                  owners=None if owners is None else np.asarray(owners, dtype=np.int32))
        n = int(seg.present.sum()) if owners is None else len(vectors)
        factory = settings.factory
        if n >= settings.exact_below and factory != "Flat":
            import faiss

            if template is not None:
                base = faiss.clone_index(template)
            elif needs_training(factory):
                return seg  # not trainable yet (too few vectors): searched exactly
            else:
                try:
                    base = faiss.index_factory(seg.dim, factory, faiss.METRIC_INNER_PRODUCT)
                except RuntimeError as e:
                    raise BadInput(f"invalid FAISS factory string {factory!r}: {e}") from e
            ann = faiss.IndexIDMap(base)
            rows = np.flatnonzero(seg.present) if owners is None else np.arange(len(vectors))
            ann.add_with_ids(vectors[rows], rows.astype(np.int64))
            seg.ann = ann
        return seg

    # -- persistence --------------------------------------------------------------------
    def save(self, arrays: ArrayWriter, folder: Path, name: str) -> dict[str, Any]:
        """Add ``vectors.<name>.present`` (and ``.owners`` with passages) to ``arrays``, and
        the raw rows ``vectors.<name>.rows`` unless the ANN index holds them already (an HNSW
        graph over flat storage of every row in ordinal order keeps each vector once, as FAISS
        stores it); write the ANN index, if any, as ``folder/<name>.faiss``. Returns what the
        segment's ``segment.json`` keeps to load it."""
        prefix = f"vectors.{name}"
        arrays.add(f"{prefix}.present", self.present)
        if self.owners is not None:
            arrays.add(f"{prefix}.owners", self.owners)
        rows = self.ann is None or _rows_in_ann(self.ann, self.present, self.owners) is None
        if rows:
            arrays.add(f"{prefix}.rows", self.vectors)
        ann = None
        if self.ann is not None:
            import faiss

            ann = f"{name}.faiss"
            faiss.write_index(self.ann, str(folder / ann))
        return {"rows": rows, "owners": self.owners is not None, "ann": ann}

    @classmethod
    def load(cls, arrays: ArrayFile, folder: Path, name: str, info: dict[str, Any]) -> VectorSegment:
        """The channel :meth:`save` wrote (``info`` is what it returned): the raw rows a
        memory-mapped view of ``arrays`` (or the HNSW index's own storage), the rest in memory."""
        prefix = f"vectors.{name}"
        try:
            present = np.array(arrays[f"{prefix}.present"])
            owners = np.array(arrays[f"{prefix}.owners"]) if info["owners"] else None
            ann = None
            if info["ann"]:
                import faiss

                f = folder / info["ann"]
                if not f.is_file():
                    raise FileNotFoundError(errno.ENOENT, "no such file", str(f))
                ann = faiss.read_index(str(f))
            if info["rows"]:
                vectors = arrays[f"{prefix}.rows"]
            else:
                vectors = _rows_in_ann(ann, present, owners) if ann is not None else None
                if vectors is None:
                    raise ValueError(f"{name} has no raw rows and its ANN index does not hold them")
        except RuntimeError as e:  # FAISS: a damaged index file
            raise IndexIncompatible(f"vector segment {folder}/{name} is unreadable: {e}") from e
        except (KeyError, TypeError, ValueError) as e:
            raise IndexIncompatible(f"vector segment {folder}/{name} is damaged: {e}") from e
        return cls(vectors, present, ann, owners)

    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.present.nbytes + (0 if self.owners is None else self.owners.nbytes))

    # -- search -------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allow: np.ndarray | None,
               settings: FaissSettings, *, aggregation: str = "max",
               top_n: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(scores, ordinals, passages)``, each (nq, <= k), best first; ordinal -1 pads.
        ``passages``: the best passage of each hit (0 without passages). A document's score
        is its best passage's (``aggregation="max"``) or the sum of its ``top_n`` best."""
        if self.owners is not None:
            return self._search_passages(queries, k, allow, settings, aggregation, top_n)
        scores, ords = self._search_rows(queries, k, allow, settings)
        return scores, ords, np.zeros(ords.shape, np.int64)

    def _search_passages(self, queries: np.ndarray, k: int, allow: np.ndarray | None,
                         settings: FaissSettings, aggregation: str,
                         top_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        owners = self.owners
        docs = self.present if allow is None else (self.present & allow)
        n_docs = int(docs.sum())
        nq = len(queries)
        k = min(k, n_docs)
        if k == 0:
            return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64), np.zeros((nq, 0), np.int64)
        rows_allowed = docs[owners]
        n_rows = int(rows_allowed.sum())
        # rows to fetch: enough for k documents when every one of them has its average
        # number of passages, more (doubling) while a query still has fewer than k
        fetch = min(n_rows, k * max(1, -(-n_rows // n_docs)))
        if aggregation == "sum_top" and (self.ann is None or n_rows <= settings.exact_below):
            fetch = n_rows  # exact: every passage counts (an ANN search sums those it finds)
        while True:
            scores, rows = self._search_rows(queries, fetch, rows_allowed, settings)
            out = [aggregate(s, r, owners, self.starts, k, aggregation, top_n) for s, r in zip(scores, rows)]
            if fetch >= n_rows or all(len(o[0]) >= k for o in out):
                break
            fetch = min(n_rows, fetch * 2)
        width = max(len(o[0]) for o in out)
        s_out = np.full((nq, width), -np.inf, np.float32)
        o_out = np.full((nq, width), -1, np.int64)
        p_out = np.zeros((nq, width), np.int64)
        for i, (s, o, p) in enumerate(out):
            s_out[i, : len(s)], o_out[i, : len(o)], p_out[i, : len(p)] = s, o, p
        return s_out, o_out, p_out

    def _search_rows(self, queries: np.ndarray, k: int, allow: np.ndarray | None,
                     settings: FaissSettings) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` rows: ``(scores, rows)``; ``allow`` is per ordinal without
        passages, per row with them."""
        mask = (self.present if allow is None else (self.present & allow)) if self.owners is None else allow
        selected = np.flatnonzero(mask)
        nq = len(queries)
        if len(selected) == 0:
            return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)
        k = min(k, len(selected))
        if self.ann is None or len(selected) <= settings.exact_below:
            q = np.asarray(queries, dtype=np.float32)
            if len(selected) == len(self.vectors):  # every row: the mapped matrix as it is, no copy
                scores = q @ self.vectors.T
            else:
                scores = q @ np.asarray(self.vectors[selected]).T
            if k < len(selected):
                part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            else:
                part = np.tile(np.arange(len(selected)), (nq, 1))
            top = np.take_along_axis(scores, part, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            cols = np.take_along_axis(part, order, axis=1)
            return np.take_along_axis(scores, cols, axis=1), selected[cols]
        total = int(self.present.sum()) if self.owners is None else len(self.vectors)
        if require_gpu(settings) and len(selected) == total:
            gpu = self._gpu_index(settings)
            if gpu is not None:
                return gpu.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return self._ann_search(queries, k, mask, len(selected) < total, settings)

    def _gpu_index(self, settings: FaissSettings) -> Any:
        """The ANN index copied to the GPU(s), for unfiltered searches (filtered ones use the
        CPU index, where FAISS pushes the selector into every index type). None where FAISS
        has no GPU version of the index (HNSW), unless ``gpu=always``, which raises."""
        if self._gpu is None:
            import faiss

            try:
                self._gpu = faiss.index_cpu_to_all_gpus(self.ann)
            except RuntimeError as e:
                if settings.gpu == "always":
                    raise
                logger.warning("FAISS %s segment stays on CPU: %s", type(self.ann.index).__name__, e)
                self._gpu = False
        return self._gpu or None

    def _ann_search(self, queries: np.ndarray, k: int, mask: np.ndarray, filtered: bool,
                    settings: FaissSettings) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        inner = faiss.downcast_index(self.ann.index)
        params: Any
        sel = None
        if filtered:
            bits = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        if hasattr(inner, "hnsw"):
            params = faiss.SearchParametersHNSW(efSearch=max(settings.ef_search, k))
        elif faiss.try_extract_index_ivf(inner) is not None:
            params = faiss.SearchParametersIVF(nprobe=settings.nprobe)
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        # ``bits`` stays referenced until the search returns: the selector points into it
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if len(q) > 1:
            return self.ann.search(q, k, params=params)
        # One query: FAISS still opens an OpenMP parallel region over the queries, and on a
        # busy machine its barrier waits for a descheduled worker thread: HNSW32 over 51k
        # rows took 12 ms per query with 2 threads and 1.3-1.7 ms with 1 (load ~10, 2 cores).
        # The thread count is a per-thread OpenMP setting, restored for this thread after.
        prev = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.ann.search(q, k, params=params)
        finally:
            faiss.omp_set_num_threads(prev)


def aggregate(scores: np.ndarray, rows: np.ndarray, owners: np.ndarray, starts: np.ndarray, k: int,
               aggregation: str, top_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One query's passage rows folded into its top ``k`` documents: ``(scores, ordinals,
    best passage)``, best first."""
    keep = rows >= 0
    s, r = scores[keep], rows[keep]
    own = owners[r]
    order = np.lexsort((-s, own))  # by document, best passage first
    s, r, own = s[order], r[order], own[order]
    first = np.ones(len(own), bool)
    first[1:] = own[1:] != own[:-1]
    heads = np.flatnonzero(first)
    if aggregation == "sum_top":
        group = np.cumsum(first) - 1
        rank = np.arange(len(own)) - heads[group]
        doc_scores = np.bincount(group, weights=np.where(rank < top_n, s, 0.0)).astype(np.float32)
    else:
        doc_scores = s[heads]
    top = np.argsort(-doc_scores, kind="stable")[:k]
    best = heads[top]
    return doc_scores[top], own[best].astype(np.int64), (r[best] - starts[own[best]]).astype(np.int64)
