""":class:`ElasticsearchCollection`: the public API of :class:`semsearch.collection.Collection`
with one Elasticsearch index (behind an alias) as the system of record.

Nothing is kept locally: no lock file, no document store, no derived index. Any number of
processes (API replicas, ``--workers``) may open the same index for reading and writing;
Elasticsearch orders the writes. A write returns once Elasticsearch acknowledged it
(durable on every in-sync copy of its shard); with ``wait_for=True`` it is also
searchable (``refresh=wait_for``).

Searches are one request each: BM25 and kNN (the filter inside ``knn.filter``) fused either
by the server's retrievers (``rrf``/``linear``, where the server has them) or by semsearch
over one ``_msearch`` (the default fusion, z-score, is not a server normaliser; client
fusion keeps the per-channel ranks and scores in every hit). Reranking stays in semsearch.
Results that some shards could not answer are returned and flagged (``degraded``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from semsearch.collection import WriteResult
from semsearch.config import Settings
from semsearch.documents import Document, SearchResult
from semsearch.encoders.base import TextEncoder
from semsearch.encoders.passages import PassagePlan
from semsearch.errors import (
    BackendUnavailable,
    BadInput,
    BulkIndexError,
    DocumentNotFound,
    IndexIncompatible,
    IndexNotFound,
)
from semsearch.images.hashing import HASH_BYTES
from semsearch.indexer.es_common import AliasedIndex, EsConnection, item_reason
from semsearch.store_es import mapping
from semsearch.store_es.lock import ManifestLock
from semsearch.store_es.search import StoreSearch, document_source, stored_document
from semsearch.store_es.writer import BulkOutcome, BulkWriter

logger = logging.getLogger(__name__)



class ElasticsearchCollection(StoreSearch):
    """Use :meth:`create` or :meth:`open` (or ``Collection.create/open`` with
    ``settings.store.backend == "elasticsearch"``)."""

    def __init__(self, settings: Settings, *, encoder: TextEncoder | None = None,
                 writable: bool = True, rebuild: bool = False) -> None:
        self.base_settings = settings
        self._effective: tuple[int, Settings] | None = None
        self.es = settings.store.elasticsearch
        self.conn = EsConnection(self.es)
        self.aliased = AliasedIndex(self.conn, self.es.index)
        self.alias = self.es.index
        self.writable = writable
        #: opened to rebuild with new index-time settings (analyzer, k1, b, vector index):
        #: the index's own are accepted until :meth:`rebuild` has moved the alias
        self._rebuild_open = rebuild
        self.writer = BulkWriter(self.conn, self.es)
        self._encoder = encoder
        #: the caller gave the encoder (checked against the index, never replaced); else it
        #: is loaded on first use, and loaded again when the index's encoder changes (adapt)
        self._given_encoder = encoder is not None
        self._reranker: Any = None
        self._given_reranker = False  # with_models(reranker=...): never replaced
        self._clip: Any = None
        #: whether the first image write declares the CLIP channel (``index --no-clip``: no)
        self.clip_images = True
        self._image_channels: list | None = None
        self._image_init = threading.RLock()  # the CLIP model and the image channels: built once
        self._image_encoding = threading.Lock()  # the channels' shared loader, one batch at a time
        self._manifest: dict[str, Any] | None = None
        self._manifest_index: str | None = None  # the physical index it was read from
        self._manifest_read = 0.0  # time.monotonic() of the last read
        self._reread_error = ""  # the last failed re-read's reason, logged once
        self._view_of: ElasticsearchCollection | None = None  # see with_models
        self._meta_lock = threading.Lock()  # this process's threads; replicas: manifest_lock
        self.manifest_lock = ManifestLock(self.conn, self.alias, ttl=self.es.lock_ttl, wait=self.es.lock_wait)
        self._server_fusion: bool | None = None if self.es.fusion == "auto" else self.es.fusion == "server"

    # -- lifecycle ----------------------------------------------------------------------
    @classmethod
    def create(cls, settings: Settings, *, encoder: TextEncoder | None = None) -> ElasticsearchCollection:
        """Open the store index for writing, creating it (and its alias) if there is none."""
        col = cls(settings, encoder=encoder, writable=True)
        try:
            if not col.aliased.targets():
                new = col.aliased.create_next(mapping.index_body(col.es))
                col.aliased.swap(new)
                logger.info("created store index %s behind alias %s", new, col.alias)
            col.reload_manifest()
            return col
        except BaseException:
            col.close()
            raise

    @classmethod
    def open(cls, settings: Settings, *, writable: bool = False,
             encoder: TextEncoder | None = None, rebuild: bool = False) -> ElasticsearchCollection:
        """Open an existing store index (:class:`IndexNotFound` if the alias is missing).
        ``rebuild=True`` (writable) accepts index-time settings that differ from the index's,
        for :meth:`rebuild` to apply (as the local ``Collection.open(reindex=True)``)."""
        col = cls(settings, encoder=encoder, writable=writable, rebuild=rebuild)
        try:
            col.reload_manifest()
            return col
        except BaseException:
            col.close()
            raise

    def with_models(self, *, encoder: TextEncoder | None = None, reranker: Any = None) -> ElasticsearchCollection:
        """This collection searching with other models, as the local Collection's
        ``with_models``: ``encoder`` for queries and/or ``reranker``. The view shares this
        one's connection and manifest; closing it does nothing."""
        import copy

        view = copy.copy(self)
        view._view_of = self
        if encoder is not None:
            view._encoder, view._given_encoder = encoder, True
        if reranker is not None:
            view._reranker, view._given_reranker = reranker, True
        return view

    def close(self) -> None:
        if self._view_of is not None:  # a with_models view: its parent owns the connection
            return
        if self._image_channels is not None:
            from semsearch.images.channels import close_channels

            close_channels(self._image_channels)
            self._image_channels = None
        self.conn.close()

    def __enter__(self) -> ElasticsearchCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> None:
        """No local directory (the local Collection's index path)."""
        return None

    @property
    def location(self) -> str:
        return f"Elasticsearch index {self.alias!r} at {self.conn.url}"

    def reload_manifest(self) -> dict[str, Any]:
        """The manifest read again from the index's mapping (another replica or a rebuild may
        have changed it), checked against the settings and the encoder, and kept."""
        target = self.aliased.current()
        if target is None:
            raise IndexNotFound(f"{self.location} does not exist (no alias {self.alias!r}); "
                                "create it with Collection.create or `semsearch index`")
        got = self.conn.call(f"read mapping of {self.alias}",
                             lambda c: c.indices.get_mapping(index=self.alias))
        meta = mapping.read_manifest(got[target], self.location)
        mapping.check_manifest(meta, self.es, self.location, settings_too=not self._rebuild_open)
        if self._encoder is not None:
            if self._given_encoder:  # an encoder given by the caller is checked too
                self._check_encoder(meta, self._encoder.name, self._encoder.dim)
            elif mapping.dense_encoder(meta) != mapping.dense_encoder(self._manifest or {}):
                # re-encoded with another model (adapt): queries are encoded with it from now
                logger.info("%s: the text encoder is now %s", self.location, mapping.dense_encoder(meta))
                self._encoder = None
        self._manifest, self._manifest_read, self._manifest_index = meta, time.monotonic(), target
        return meta

    def _model_folder(self, name: str) -> str:
        """A published model's local folder (fetched from the cluster once), else ``name``."""
        from semsearch.store_es import models

        if not models.is_ref(name):
            return name
        return str(models.fetch(self.conn, name, self.es.model_cache, self.es.models_index))

    def _check_encoder(self, meta: dict[str, Any], name: str, dim: int) -> None:
        """Refuse an encoder other than the index's (a published model: its local folder)."""
        dense = meta.get("dense")
        if dense:
            meta = {**meta, "dense": {**dense, "encoder": self._model_folder(dense["encoder"])}}
        mapping.check_encoder(meta, name, dim, self.location)

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest, read again when older than ``manifest_refresh`` seconds: what another
        replica or ``semsearch adapt`` recorded (channels, search defaults) reaches this one
        without a restart. A failed re-read keeps the manifest held: the search that follows
        reports an unreachable cluster itself, and a replica whose settings no longer match
        the index (rebuilt with a new analyzer before this replica was restarted with it)
        goes on searching, as it did before re-reads, and says so once."""
        if self._manifest is None:
            return self.reload_manifest()
        if time.monotonic() - self._manifest_read > self.es.manifest_refresh:
            try:
                return self.reload_manifest()
            except (BackendUnavailable, IndexIncompatible) as e:
                self._manifest_read = time.monotonic()  # not a re-read per search meanwhile
                if str(e) != self._reread_error:
                    self._reread_error = str(e)
                    logger.warning("%s: keeping the manifest read before: %s", self.location, e)
        return self._manifest

    @property
    def settings(self) -> Settings:
        """The settings searches use: the configured ones plus the search defaults
        ``semsearch adapt`` recorded in the manifest (``tuned``) for whatever the user did not
        set, as the local index's (:func:`semsearch.adapt.tuned.effective_settings`)."""
        from semsearch.adapt.tuned import effective_settings

        m = self.manifest if self._manifest is not None else {}  # {}: not opened yet
        if self._effective is None or self._effective[0] != id(m):
            tuned = dict(m.get("tuned") or {})
            from semsearch.store_es import models

            if models.is_ref(enc := mapping.dense_encoder(m)):  # adapt's encoder: the documents' vectors are its
                tuned["dense_encoder"] = self._model_folder(enc)
            rerank = dict(tuned.get("rerank") or {})
            if models.is_ref(rerank.get("model")) and "model" not in self.base_settings.rerank.model_fields_set:
                tuned["rerank"] = {**rerank, "model": self._model_folder(rerank["model"])}  # adapt's reranker
            self._effective = (id(m), effective_settings(self.base_settings, tuned, None))
        return self._effective[1]

    def _put_meta(self, properties: dict[str, Any], meta: dict[str, Any]) -> None:
        body = {"_meta": {"semsearch": meta}, "properties": properties}
        self.conn.call(f"update mapping of {self.alias}",
                       lambda c: c.indices.put_mapping(index=self.alias, **body))
        self._manifest, self._manifest_read = meta, time.monotonic()

    def set_tuned(self, tuned: dict[str, Any]) -> dict[str, Any]:
        """Record the search defaults ``semsearch adapt`` chose (fusion, reranking) in the
        manifest, as the local Collection's ``set_tuned``; every replica searches with them
        once it has read the manifest again (within ``manifest_refresh`` seconds). A reranker
        folder (``rerank.model``) is published in the cluster first and recorded by its
        ``semsearch-model:<sha256>`` name, which every replica fetches. Returns what was
        recorded."""
        self._check_writable()
        tuned = self._publish_tuned(tuned)
        with self._changing_manifest() as meta:
            self._put_meta({}, {**meta, "tuned": tuned})
        return tuned

    _TUNED_KEYS = frozenset({"fusion", "rerank", "by", "at"})

    def _publish_tuned(self, tuned: dict[str, Any]) -> dict[str, Any]:
        """``tuned`` checked for the store, its reranker folder (if any) published in the
        cluster and named by its reference. The text encoder is not a tuned default here: the
        manifest's ``dense`` names it (:meth:`reencode`)."""
        from pathlib import Path

        from semsearch.store_es import models

        if set(tuned) - self._TUNED_KEYS:
            raise BadInput(f"{self.location}: only fusion and reranking defaults can be recorded in the "
                           f"Elasticsearch store (got {sorted(set(tuned) - self._TUNED_KEYS)})")
        model = (tuned.get("rerank") or {}).get("model")
        if not model:
            return tuned
        if models.is_ref(model):
            if models.published(self.conn, models.digest_of(model), self.es.models_index) is None:
                raise BadInput(f"{self.location}: the reranker {model} is not published in "
                               f"{self.es.models_index}; no replica could load it")
            return tuned
        folder = Path(model)
        if not (folder / "config.json").is_file():
            raise BadInput(f"{self.location}: the reranker {model!r} to record is not a saved model folder "
                           "(no config.json); every replica must be able to load it")
        rec = models.publish(self.conn, folder, cache=self.es.model_cache, index=self.es.models_index)
        logger.info("%s: reranker %s published as %s (%.0f MB)", self.location, folder, rec["ref"], rec["bytes"] / 1e6)
        return {**tuned, "rerank": {**tuned["rerank"], "model": rec["ref"]}}

    def passage_plan(self, channel: str = "dense") -> PassagePlan | None:
        """How the dense channel splits long documents into passages (None: one vector per
        document, or no dense channel), as the local Collection's."""
        if channel != "dense":
            raise BadInput(f"{self.location}: only the dense channel has passages, not {channel!r}")
        return PassagePlan.from_record((self.manifest.get("dense") or {}).get("passages"))

    def passage_vectors(self, ids: Sequence[str], channel: str = "dense", *,
                        chunk: int = 500) -> list[np.ndarray | None]:
        """Per id, all its stored dense vectors, ``(n_passages, dim)`` (one row without
        passages); None for an id without one (absent, or not encoded)."""
        dense = self.manifest.get("dense") if channel == "dense" else None
        if not dense:
            raise BadInput(f"{self.location} has no {channel!r} channel with text vectors")
        field = mapping.PASSAGE_FIELD if mapping.has_passages(dense) else mapping.VECTOR_FIELD
        out: list[np.ndarray | None] = []
        for b in range(0, len(ids), chunk):
            part = list(ids[b : b + chunk])
            resp = self.conn.call(f"get vectors from {self.alias}", lambda c, part=part: c.mget(
                index=self.alias, ids=part, source_includes=[field]))
            for d in resp["docs"]:
                got = (d.get("_source") or {}).get(field)
                if not got:
                    out.append(None)
                elif field == mapping.PASSAGE_FIELD:
                    out.append(np.array([p["vector"] for p in got], dtype=np.float32))
                else:
                    out.append(np.array([got], dtype=np.float32))
        return out

    @contextmanager
    def _changing_manifest(self) -> Iterator[dict[str, Any]]:
        """The manifest read again while this process's threads and every other replica are
        kept out (:class:`~semsearch.store_es.lock.ManifestLock`): ``_meta`` is replaced whole
        by each update, so a change made inside is never lost to another writer's."""
        with self._meta_lock, self.manifest_lock.held():
            yield self.reload_manifest()

    def _ensure_dense(self, name: str, dim: int, *, passages: dict[str, Any] | None,
                      explicit: bool = False) -> PassagePlan | None:
        """Declare the text embedding on the first encoded write, in the layout ``passages``
        asks for (a :class:`PassagePlan` record, None: one vector per document), or check the
        recorded one. Returns the plan in force: the index's. A plan the user set explicitly
        (``explicit``) that differs from the recorded one is an error (a re-encode)."""

        def recorded(meta: dict[str, Any]) -> PassagePlan | None:
            self._check_encoder(meta, name, dim)
            have = meta["dense"].get("passages")
            if explicit and have != passages:
                raise IndexIncompatible(
                    f"{self.location} embeds documents with passages {have} but the settings "
                    f"ask for {passages} (text_encoder.passages): changing how documents are "
                    "split needs a re-encode: unset the passage settings or rebuild into a new "
                    "index name")
            return PassagePlan.from_record(have)

        if self.manifest.get("dense"):
            return recorded(self.manifest)
        with self._changing_manifest() as meta:  # another replica may have added it
            if meta.get("dense"):
                return recorded(meta)
            dense = {"encoder": name, "dim": dim, "passages": passages}
            self._put_meta(mapping.dense_properties(dense, self.es), {**meta, "dense": dense})
            return PassagePlan.from_record(passages)

    def _ensure_hashes(self, names: Sequence[str]) -> None:
        if not [n for n in names if n not in self.manifest.get("hashes", [])]:
            return
        with self._changing_manifest() as meta:
            self._declare_images(meta, None, names)

    def _ensure_clip(self, name: str, dim: int) -> None:
        """Declare the CLIP embedding (the ``image`` channel) on the first write that has one,
        or check the recorded model."""
        if not self.manifest.get("clip"):
            with self._changing_manifest() as meta:
                if not meta.get("clip"):
                    self._declare_images(meta, (name, dim), ())
                    return
        mapping.check_clip(self.manifest, name, dim, self.location)

    def _declare_images(self, meta: dict[str, Any], clip: tuple[str, int] | None,
                        hashes: Sequence[str]) -> None:
        """Add the CLIP channel (``(encoder, dim)``) and the hash channels missing from the
        manifest ``meta`` (read under :meth:`_changing_manifest`) in one mapping update."""
        props: dict[str, Any] = {}
        have = list(meta.get("hashes", []))
        new = [n for n in hashes if n not in have]
        if new:
            props.update({n: mapping.hash_mapping() for n in new})
            meta = {**meta, "hashes": have + new}
        if clip is not None and not meta.get("clip"):
            props[mapping.CLIP_FIELD] = mapping.vector_mapping(clip[1], self.es)
            meta = {**meta, "clip": {"encoder": clip[0], "dim": clip[1]}}
        if props:
            self._put_meta(props, meta)

    # -- models -------------------------------------------------------------------------
    @property
    def encoder(self) -> TextEncoder:
        """The text encoder, loaded on first use and checked against the manifest."""
        if self._encoder is None:
            from semsearch.encoders import make_text_encoder

            enc = make_text_encoder(self.settings.text_encoder, for_queries=True)
            self._check_encoder(self.manifest, enc.name, enc.dim)
            self._encoder = enc
        return self._encoder

    @property
    def clip(self) -> Any:
        """The CLIP encoder (``image`` channel: writes and searches), loaded on first use and
        checked against the manifest."""
        with self._image_init:
            if self._clip is None:
                from semsearch.encoders.clip import ClipEncoder

                enc = ClipEncoder(self.settings.clip)
                mapping.check_clip(self.manifest, enc.name, enc.dim, self.location)
                self._clip = enc
            return self._clip

    def image_channels(self) -> list:
        """The image channels of this index's writes: CLIP when the index has it or no image
        channel yet (as the local index; unless ``clip_images`` is off), and the hashes;
        built once."""
        with self._image_init:
            if self._image_channels is None:
                roots = self.settings.images.roots
                if not roots:
                    raise BadInput("no image roots are set (SEMSEARCH_IMAGES__ROOTS): image files are not read")
                from semsearch.images.channels import image_channels

                # the CLIP model is loaded before the lock is taken when it will likely be
                # needed, so that other replicas do not wait for its loading
                likely = self.clip if self.clip_images or self.manifest.get("clip") else None
                # decided and declared at once, under the manifest lock: a replica writing
                # its first images at the same time with the other answer (``--no-clip``)
                # follows this one's instead of writing a layout the manifest does not say
                with self._changing_manifest() as meta:
                    clip = bool(meta.get("clip")) or (self.clip_images and not meta.get("hashes"))
                    chans = image_channels(self.settings, roots=list(roots), clip=clip,
                                           clip_encoder=(likely or self.clip) if clip else None)
                    enc = next((ch for ch in chans if ch.name == "image"), None)
                    self._declare_images(meta, (enc.encoder.name, enc.dim) if enc else None,
                                         [ch.name for ch in chans if ch.name != "image"])
                self._image_channels = chans
            return self._image_channels

    def warm_up(self) -> None:
        """Load the models searches use now, as the local Collection's ``warm_up``."""
        from semsearch.collection import WARM_UP_DOC

        if self.manifest.get("dense"):
            self.encoder.encode(["warm up"])
        if self.manifest.get("clip"):
            self.clip.encode_texts(["warm up"])
        if self.settings.rerank.model:
            self.reranker.score("warm up", [WARM_UP_DOC])

    @property
    def reranker(self) -> Any:
        """The cross-encoder of ``settings.rerank``, loaded on first use, and loaded again when
        the manifest names another one (``semsearch adapt`` recorded a new reranker)."""
        from semsearch.rerank.cross_encoder import current_reranker

        self._reranker = current_reranker(self.settings.rerank, self._reranker, given=self._given_reranker,
                                          missing="reranking needs a trained cross-encoder: set SEMSEARCH_RERANK__MODEL")
        return self._reranker

    # -- reads --------------------------------------------------------------------------
    def documents(self, *, page: int = 1000) -> Iterator[Document]:
        """Every stored document, read through a point in time (a consistent snapshot) taken
        after a refresh: acknowledged writes included, deleted documents not (as the local
        :meth:`semsearch.collection.Collection.documents`). Order: by shard and Lucene doc."""
        self.refresh()
        body: dict[str, Any] = {"query": {"match_all": {}}, "_source": {"excludes": mapping.SOURCE_EXCLUDES}}
        for batch in self.pit_pages(body, ["_shard_doc"], page):
            for h in batch:
                yield stored_document(h["_id"], h["_source"])

    def search_by_image(self, image: Any, *, k: int = 10, channels: Sequence[str] | None = None,
                        max_distance: int | None = None, with_documents: bool = True) -> SearchResult:
        """Find images like ``image`` (a path or PIL image) by their perceptual hashes
        (Hamming distance; hits carry it in ``Hit.extra``), as the local Collection."""
        from semsearch.store_es.images import search_by_image

        return search_by_image(self, image, k=k, channels=channels, max_distance=max_distance,
                               with_documents=with_documents)

    def duplicates(self, max_distance: int, *, mirrored: bool = True,
                   min_cosine: float | None = None) -> Any:
        """Near-duplicate groups of the stored images (pHash within ``max_distance``, flips
        included with ``mirrored``): a :class:`~semsearch.images.dedup.DedupResult`."""
        from semsearch.store_es.images import duplicates

        return duplicates(self, max_distance, mirrored=mirrored, min_cosine=min_cosine)

    def get(self, ids: str | Iterable[str]) -> Any:
        """One document by id (:class:`DocumentNotFound` if absent), or a dict for several."""
        one = isinstance(ids, str)
        want = [ids] if one else list(ids)
        docs: dict[str, Document] = {}
        if want:
            resp = self.conn.call(f"get documents from {self.alias}", lambda c: c.mget(
                index=self.alias, ids=want, source_excludes=mapping.SOURCE_EXCLUDES))
            for d in resp["docs"]:
                if d.get("found"):
                    docs[d["_id"]] = stored_document(d["_id"], d["_source"])
                elif "error" in d:
                    raise BackendUnavailable(f"{self.location}: get {d['_id']!r} failed: {item_reason(d)}")
        if one:
            if ids not in docs:
                raise DocumentNotFound(f"document {ids!r} is not in the index")
            return docs[ids]  # type: ignore[index]
        return docs

    def channel_results(self, queries: Sequence[str], depth: int, mode: str = "hybrid", *,
                        filters: dict[str, Any] | None = None, boosts: dict[str, float] | None = None,
                        ) -> tuple[list[dict[str, list[tuple[str, float]]]], dict[str, str]]:
        """Per query, the top ``depth`` ``(id, score)`` of each text channel of ``mode``
        (lexical, dense) searched alone, as the local Collection's (mining training pairs);
        a failed channel raises (there is no partial answer to report)."""
        from semsearch.collection import SearchRequest
        from semsearch.search.engine import MODES

        chans = MODES.get(mode)
        if not chans or "image" in chans:
            raise BadInput(f"channel_results covers the text channels (lexical, dense, hybrid), not {mode!r}")
        out: list[dict[str, list[tuple[str, float]]]] = [{} for _ in queries]
        for ch in chans:
            reqs = [SearchRequest(query=q, k=depth, mode=ch, filters=filters, boosts=boosts, rerank=False,
                                  with_documents=False) for q in queries]
            for row, res in zip(out, self.search_batch(reqs), strict=True):
                row[ch] = [(h.id, float(h.score)) for h in res.hits]
        return out, {}

    def vectors(self, ids: Sequence[str], channel: str = "dense") -> np.ndarray:
        """The stored vectors of ``ids`` in a channel, one row per id in that order (zeros for
        an id without one), as the local Collection: ``dense`` (a document of several
        passages: its first passage's) and ``image`` (CLIP) as float32, a hash channel as its
        8 bytes."""
        return self.vectors_of(ids, (channel,))[channel]

    def vectors_of(self, ids: Sequence[str], channels: Sequence[str]) -> dict[str, np.ndarray]:
        """:meth:`vectors` of several channels in one ``mget``."""
        meta = self.manifest
        dense = meta.get("dense")
        how = {}
        for channel in channels:
            if channel == "dense" and dense:
                how[channel] = (mapping.vector_field(dense), int(dense["dim"]), np.float32)
            elif channel == "image" and meta.get("clip"):
                how[channel] = (mapping.CLIP_FIELD, int(meta["clip"]["dim"]), np.float32)
            elif channel in meta.get("hashes", []):
                how[channel] = (channel, HASH_BYTES, np.uint8)
            else:
                raise BadInput(f"{self.location} has no {channel!r} channel")
        out = {ch: np.zeros((len(ids), dim), dtype=dtype) for ch, (_, dim, dtype) in how.items()}
        if not ids:
            return out
        resp = self.conn.call(f"get vectors from {self.alias}", lambda c: c.mget(
            index=self.alias, ids=list(ids), source_includes=sorted({f for f, _, _ in how.values()})))
        for i, d in enumerate(resp["docs"]):
            src = d.get("_source") or {}
            for channel, (field, _, dtype) in how.items():
                if dtype == np.uint8 and src.get(field):
                    out[channel][i] = np.frombuffer(bytes.fromhex(src[field]), np.uint8)
                elif mapping.has_passages(dense) and channel == "dense" and src.get(mapping.PASSAGE_FIELD):
                    out[channel][i] = src[mapping.PASSAGE_FIELD][0]["vector"]
                elif src.get(field) is not None:
                    out[channel][i] = src[field]
        return out

    def _existing(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        resp = self.conn.call(f"check ids in {self.alias}", lambda c: c.mget(
            index=self.alias, ids=list(ids), source=False))
        return {d["_id"] for d in resp["docs"] if d.get("found")}

    @property
    def channels(self) -> tuple[str, ...]:
        """The names of the index's vector and hash channels, from the manifest."""
        return tuple(mapping.channels(self.manifest))

    def stats(self) -> dict[str, Any]:
        target = self.aliased.current()
        count = self.conn.call(f"count {self.alias}", lambda c: c.count(index=self.alias))["count"]
        st = self.conn.call(f"stats of {self.alias}", lambda c: c.indices.stats(index=self.alias, metric="store,docs"))
        prim = st["_all"]["primaries"]
        health = self.conn.call("index health", lambda c: c.cluster.health(index=self.alias, timeout="5s"))
        meta = self.manifest
        return {
            "backend": "elasticsearch", "url": self.conn.url, "alias": self.alias, "index": target,
            "documents": int(count), "shards": self.es.shards, "replicas": self.es.replicas,
            "health": health.get("status"), "size_bytes": int(prim["store"]["size_in_bytes"]),
            "format_version": meta.get("format_version"),
            "channels": mapping.channels(meta),
            "tuned": meta.get("tuned") or {},  # the search defaults `semsearch adapt` recorded
            # the loaded one, else the one the manifest records (adapt's: semsearch-model:<sha256>)
            "models": {"text_encoder": getattr(self._encoder, "name", None) or mapping.dense_encoder(meta),
                       "clip": (meta.get("clip") or {}).get("encoder")},
        }

    def gauges(self) -> dict[str, int]:
        """``/metrics``' view of the index, as the local Collection's: ``documents`` (a count:
        Lucene's doc count includes the nested passages), ``size_bytes`` and ``segments``
        (primaries), ``pending`` 0 (Elasticsearch's refresh owns searchability)."""
        count = self.conn.call(f"count {self.alias}", lambda c: c.count(index=self.alias))["count"]
        st = self.conn.call(f"stats of {self.alias}", lambda c: c.indices.stats(
            index=self.alias, metric="store,segments"))["_all"]["primaries"]
        return {"documents": int(count), "size_bytes": int(st["store"]["size_in_bytes"]),
                "segments": int(st["segments"]["count"]), "pending": 0}

    def ready(self) -> dict[str, Any]:
        """Raises :class:`BackendUnavailable` when the cluster is red or unreachable and
        :class:`IndexNotFound` when the index is missing."""
        health = self.conn.call("cluster health", lambda c: c.cluster.health(timeout="5s"))
        status = health.get("status")
        if status == "red":
            raise BackendUnavailable(f"Elasticsearch cluster at {self.conn.url} is red "
                                     f"({health.get('unassigned_primary_shards', '?')} primary shards unassigned)")
        if not self.aliased.targets():
            raise IndexNotFound(f"{self.location} does not exist")
        idx = self.conn.call("index health", lambda c: c.cluster.health(index=self.alias, timeout="5s"))
        if idx.get("status") == "red":
            raise BackendUnavailable(f"{self.location} is red: some primary shards are unassigned")
        return {"cluster": status, "index": idx.get("status"), "nodes": health.get("number_of_nodes")}

    # -- writes -------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if not self.writable:
            raise BadInput(f"{self.location} was opened read-only")

    def _refresh_arg(self, wait_for: bool) -> Any:
        if not wait_for:
            return False
        # with refresh disabled, wait_for would wait for a refresh nobody schedules
        return "true" if self.es.refresh_interval == "-1" else "wait_for"

    def add(self, docs: Sequence[Document], *, wait_for: bool = False) -> WriteResult:
        """Add new documents; an id already in the index is an error (nothing is written)."""
        self._check_writable()
        taken = sorted(self._existing([d.id for d in docs]))
        if taken:
            raise BadInput(f"{len(taken)} id(s) already in the index (use upsert to replace): {taken[:10]}")
        return self._write(docs, wait_for, op="create")

    def upsert(self, docs: Sequence[Document], *, wait_for: bool = False,
               timeout: float = 60.0) -> WriteResult:
        """Encode and write ``docs`` (replacing any with the same ids). Returns once
        Elasticsearch acknowledged them; with ``wait_for`` once they are searchable. Raises
        :class:`BulkIndexError` naming every rejected document (the others are written)."""
        self._check_writable()
        return self._write(docs, wait_for, op="index")

    def _write(self, docs: Sequence[Document], wait_for: bool, *, op: str) -> WriteResult:
        docs = list(docs)
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise BadInput("a batch repeats a document id")
        extra: dict[str, dict[str, Any]] = {d.id: {} for d in docs}
        with_text = [d for d in docs if d.title.strip() or d.text.strip()]
        encoded_with = None
        if with_text:  # every text document carries its embedding
            for d, fields in zip(with_text, self._embed(with_text)):
                extra[d.id].update(fields)
            encoded_with = mapping.dense_encoder(self.manifest)
        extra_h = self._images(docs)
        for i, h in extra_h.items():
            extra[i].update(h)
        out = self.writer.write(self._actions(docs, extra, op), f"bulk write into {self.alias}",
                                refresh=self._refresh_arg(wait_for))
        if encoded_with is not None and out.ok:
            self._encoded_with(encoded_with, [d for d in with_text if d.id in set(out.ok)], extra, wait_for)
        return self._result(ids, out, wait_for)

    def _encoded_with(self, name: str, docs: list[Document], extra: dict[str, dict[str, Any]],
                      wait_for: bool) -> None:
        """After a write of ``docs`` encoded with ``name``: if the index embeds with another
        encoder by now (``semsearch adapt`` re-encoded it and moved the alias while this
        replica still had the old manifest, so that the write landed in the new index),
        encode them again with the index's encoder and write them again. Read after the
        acknowledgement, so that no such write is missed: a write acknowledged by the old
        index before the move was re-encoded by the rebuild's catch-up."""
        got = self.conn.call(f"read mapping of {self.alias}", lambda c: c.indices.get_mapping(index=self.alias))
        now = mapping.dense_encoder(mapping.read_manifest(next(iter(got.body.values())), self.location))
        if now == name:
            return
        logger.warning("%s: %d document(s) were encoded with %s but the index now embeds with %s "
                       "(re-encoded meanwhile): writing them again", self.location, len(docs), name, now)
        self.reload_manifest()
        for d, fields in zip(docs, self._embed(docs), strict=True):
            extra[d.id].update(fields)
        out = self.writer.write(self._actions(docs, extra, "index"), f"bulk write again into {self.alias}",
                                refresh=self._refresh_arg(wait_for))
        if out.failures:
            raise BulkIndexError(self.location, out.failures)

    def _actions(self, docs: list[Document], extra: dict[str, dict[str, Any]], op: str) -> Iterator[dict[str, Any]]:
        """The bulk actions writing ``docs`` with their ``extra`` fields (embeddings, hashes)."""
        return ({"_op_type": op, "_index": self.alias, "_id": d.id,
                 "_source": {**document_source(d), **extra[d.id]}} for d in docs)

    def _embed(self, docs: list[Document], encoder: TextEncoder | None = None,
               dense: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Per document, its embedding fields in the index's layout (declared on first use),
        or with ``encoder`` in the layout of the manifest entry ``dense`` (a re-encode)."""
        from semsearch.encoders import passages as P

        enc, te = encoder or self.encoder, self.settings.text_encoder
        if dense is not None:
            plan = PassagePlan.from_record(dense.get("passages"))
        else:
            wanted = P.plan_for(te.passages, enc)
            plan = self._ensure_dense(enc.name, enc.dim, passages=wanted.record() if wanted else None,
                                      explicit=P.explicit(te.passages))
            dense = self.manifest["dense"]
        if plan is not None:
            cuts, mats = P.encode_split(enc, te.doc_template, docs, plan)
            return [mapping.dense_source(dense, m, c) for m, c in zip(mats, cuts)]
        from semsearch.indexer.pipeline import TextChannel

        mat = TextChannel(enc, te.doc_template, backend="elasticsearch").encode(docs)[0]
        return [mapping.dense_source(dense, row[None, :], [(0, len(d.text))]) for d, row in zip(docs, mat)]

    def bulk_load(self, docs: Sequence[Document], vectors: np.ndarray, *, encoder_name: str,
                  refresh: bool = False) -> WriteResult:
        """Write documents whose embeddings were computed elsewhere (migrations, benchmarks):
        row ``i`` of ``vectors`` is the L2-normalised embedding of ``docs[i]`` by
        ``encoder_name``: each document is one vector (a new index gets the one-vector layout;
        in a passage index each document is one passage). No encoder is loaded. Rejections
        raise :class:`BulkIndexError`."""
        self._check_writable()
        docs = list(docs)
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or len(v) != len(docs) or not np.isfinite(v).all():
            raise BadInput(f"vectors of shape {v.shape} for {len(docs)} documents")
        self._ensure_dense(encoder_name, v.shape[1], passages=None)
        dense = self.manifest["dense"]
        actions = ({"_op_type": "index", "_index": self.alias, "_id": d.id,
                    "_source": {**document_source(d),
                                **mapping.dense_source(dense, row[None, :], [(0, len(d.text))])}}
                   for d, row in zip(docs, v))
        out = self.writer.write(actions, f"bulk load into {self.alias}")
        if refresh:
            self.refresh()
        return self._result([d.id for d in docs], out, refresh)

    def _result(self, ids: list[str], out: BulkOutcome, wait_for: bool) -> WriteResult:
        if out.failures:
            raise BulkIndexError(self.location, out.failures)
        return WriteResult(ids=ids, seq=max(out.max_seq_no, 0), searchable=bool(wait_for))

    def _images(self, docs: Sequence[Document]) -> dict[str, dict[str, Any]]:
        """The image fields of the image documents among ``docs``: the CLIP embedding (when
        the index has that channel) and the perceptual hashes, as hex strings of the bit
        vectors. A file that cannot be used rejects the batch, naming each document."""
        with_image = [d for d in docs if d.image is not None]
        if not with_image:
            return {}
        from semsearch.images.channels import encode_documents

        chans = self.image_channels()
        out: dict[str, dict[str, Any]] = {}
        for name, (mat, kept) in encode_documents(chans, with_image, self._image_encoding).items():
            field = mapping.CLIP_FIELD if name == "image" else name
            for d, row in zip(kept, mat):
                # CLIP: a float vector; hashes: their bits in hex
                out.setdefault(d.id, {})[field] = mapping.json_vectors(row) if name == "image" else bytes(row).hex()
        for ch in chans:
            if ch.name == "image":
                self._ensure_clip(ch.encoder.name, ch.dim)
        self._ensure_hashes([ch.name for ch in chans if ch.name != "image"])
        return out

    def delete(self, ids: str | Sequence[str], *, wait_for: bool = False, missing_ok: bool = False,
               timeout: float = 60.0) -> WriteResult:
        """Delete documents by id; an id not in the index is an error unless ``missing_ok``."""
        self._check_writable()
        ids = [ids] if isinstance(ids, str) else list(ids)
        if not missing_ok:
            absent = sorted(set(ids) - self._existing(ids))
            if absent:
                raise DocumentNotFound(f"document(s) not in the index: {absent[:10]}")
        actions = ({"_op_type": "delete", "_index": self.alias, "_id": i} for i in ids)
        out = self.writer.write(actions, f"bulk delete from {self.alias}",
                                refresh=self._refresh_arg(wait_for))
        return self._result(ids, out, wait_for)

    def refresh(self) -> dict[str, Any]:
        """Make every acknowledged write searchable now."""
        t0 = time.perf_counter()
        resp = self.conn.call(f"refresh {self.alias}", lambda c: c.indices.refresh(index=self.alias))
        return {"refreshed": True, "shards": resp.get("_shards"), "seconds": time.perf_counter() - t0,
                "changed": 0, "deleted": 0}

    @property
    def searchable_seq(self) -> int:
        """Elasticsearch has no global change sequence: per-shard ``_seq_no`` only. 0."""
        return 0

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Make every acknowledged write searchable (a refresh); True when done."""
        self.refresh()
        return True

    # -- rebuild ------------------------------------------------------------------------
    def reencode(self, vectors: dict[str, np.ndarray], model: Any, *,
                 tuned: dict[str, Any] | None = None, base: str | None = None) -> dict[str, Any]:
        """Switch the text embedding to the sentence-transformers folder ``model`` (``semsearch
        adapt``'s fine-tuned encoder), as the local Collection's ``replace_vectors``: the
        folder is published in the cluster (:mod:`semsearch.store_es.models`), then a
        :meth:`rebuild` writes every document into a new physical index with its new vectors
        (``vectors`` by id, ``(n_passages, dim)`` each in the index's passage layout; documents
        missing there, or written during the rebuild, are encoded with ``model``), records the
        model (and ``tuned``, the search defaults) in the new index's manifest and moves the
        alias. Replicas switch their query encoder when they next read the manifest: after
        ``manifest_refresh`` seconds, or at once when a search's hits come from the new
        physical index (that search is run again with the new encoder); their writes encoded
        with the old model are written again (:meth:`_encoded_with`). When the index is
        already encoded with ``model``, only ``tuned`` is recorded (no rebuild)."""
        from pathlib import Path

        from semsearch.encoders.sbert import SentenceTransformerEncoder
        from semsearch.store_es import models
        from semsearch.store_es.rebuild import Reencode, rebuild

        self._check_writable()
        dense = self.manifest.get("dense")
        if not dense:
            raise BadInput(f"{self.location} has no text embedding to re-encode")
        if tuned is not None:
            tuned = self._publish_tuned(tuned)
        rec = models.publish(self.conn, Path(model), base=base or dense["encoder"], cache=self.es.model_cache,
                             index=self.es.models_index)  # nothing sent when it is there already
        if dense["encoder"] == rec["ref"]:
            # already encoded with it (``adapt`` run again, e.g. to add a reranker): no rebuild
            return {"encoder": rec["ref"], "unchanged": True,
                    "tuned": self.set_tuned(tuned) if tuned is not None else None}
        enc = SentenceTransformerEncoder(self.settings.text_encoder.model_copy(update={"model": str(model)}))
        new_dense = {**dense, "encoder": rec["ref"], "dim": enc.dim,
                     "model": {k: rec[k] for k in ("sha256", "bytes", "files", "base")}}
        job = Reencode(dense=new_dense, tuned=tuned, vectors=vectors,
                       embed=lambda docs: self._embed(docs, enc, new_dense))
        info = rebuild(self, job)
        return {**info, "encoder": rec["ref"], "model_bytes": rec["bytes"], "tuned": tuned}

    def rebuild(self) -> dict[str, Any]:
        """Copy every document (with its stored vectors, nothing is re-encoded) into a new
        physical index built with the current settings, then move the alias to it in one
        atomic call and delete the old version. Searches keep answering from the old index
        until the swap.

        Writes made while it runs are kept, whichever process or replica makes them:

        1. copy: every document of a point in time of the old index goes to the new one,
           its version (``_seq_no``, ``_primary_term``) noted; writes go on to the old index;
        2. block: the old index gets a ``write`` block (the add-block API returns once the
           writes in flight are done, so each write is either acknowledged before it or
           refused); refused writes are retried by :class:`BulkWriter` (``block_wait``);
        3. catch up: when a shard's max ``_seq_no`` moved since step 1, the ids and versions
           of the old index are read again: documents new or changed since the point in
           time are copied again, documents gone are deleted from the new index;
        4. swap the alias and delete the old index; the retried writes land in the new one.

        Writes wait only during steps 2-4. If the rebuild fails, the new index is dropped
        and the block lifted."""
        from semsearch.store_es.rebuild import rebuild

        self._check_writable()
        info = rebuild(self)
        self._rebuild_open = False  # the index now has the configured settings
        return info


__all__ = ["ElasticsearchCollection"]
