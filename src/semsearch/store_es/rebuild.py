"""Zero-downtime rebuild of the store index that keeps every write made while it runs (the
steps are in :meth:`semsearch.store_es.collection.ElasticsearchCollection.rebuild`): copy a
point in time into a new physical index, write-block the old one, catch up with what changed
since the point in time, swap the alias. Writers refused by the block retry
(:class:`semsearch.store_es.writer.BulkWriter`) and land in the new index after the swap.

Why not the alternatives: dual writes from the rebuilding process miss the writes of other
replicas (each API worker writes on its own); a write alias over both indexes writes to one
of them only; ``_reindex`` is not in the Maven Central distribution the tests run against.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from semsearch.documents import Document
from semsearch.errors import BackendUnavailable, BulkIndexError, IndexNotFound
from semsearch.store_es import mapping

# collection imports this module lazily (in rebuild()), so this import is not circular
from semsearch.store_es.collection import ElasticsearchCollection
from semsearch.store_es.search import document_source, stored_document

logger = logging.getLogger(__name__)

#: a version of a document in one index: (``_seq_no``, ``_primary_term``)
Version = tuple[int, int]


@dataclass
class Reencode:
    """A rebuild that also replaces the text embedding (``semsearch adapt``'s fine-tuned
    encoder): ``dense`` is the new manifest entry (its ``encoder`` the published model),
    ``tuned`` the search defaults to record with it, ``vectors`` the new vectors computed
    beforehand by document id (``(n_passages, dim)`` each, in the index's passage layout), and
    ``embed`` embeds documents with the new encoder into their fields (documents written or
    changed after ``vectors`` were computed, and any whose passages do not match)."""

    dense: dict[str, Any]
    tuned: dict[str, Any] | None
    vectors: dict[str, np.ndarray]
    embed: Callable[[list[Document]], list[dict[str, Any]]]
    reused: int = 0
    encoded: int = 0

    def meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The manifest ``meta`` with the new embedding (and defaults)."""
        return {**meta, "dense": self.dense, "tuned": meta.get("tuned") if self.tuned is None else self.tuned}

    def actions(self, index: str, hits: list[dict[str, Any]], *, cached: bool = True) -> Iterator[dict[str, Any]]:
        """Index actions writing ``hits`` (stored documents with their ``_source``) to
        ``index`` with the new embedding: from :attr:`vectors` (``cached``) when a document's
        stored passages match them, else encoded now."""
        out, todo = [], []
        for h in hits:
            act = copy_action(index, h)
            src = act["_source"]
            for f in (mapping.VECTOR_FIELD, mapping.PASSAGE_FIELD):
                src.pop(f, None)
            stored = h["_source"]
            if mapping.PASSAGE_FIELD in stored:
                cuts = [(p["start"], p["end"]) for p in stored[mapping.PASSAGE_FIELD]]
            elif mapping.VECTOR_FIELD in stored:
                cuts = [(0, len(stored.get("text") or ""))]
            else:  # no text embedding (an image document): nothing to re-encode
                out.append(act)
                continue
            got = self.vectors.get(h["_id"]) if cached else None
            if got is not None and len(got) == len(cuts):
                src.update(mapping.dense_source(self.dense, got, cuts))
                self.reused += 1
            else:
                todo.append((act, stored_document(h["_id"], stored)))
            out.append(act)
        if todo:
            for (act, _), fields in zip(todo, self.embed([d for _, d in todo]), strict=True):
                act["_source"].update(fields)
            self.encoded += len(todo)
        yield from out


def rebuild(col: ElasticsearchCollection, reencode: Reencode | None = None) -> dict[str, Any]:
    """See :meth:`ElasticsearchCollection.rebuild`; with ``reencode``, the new index gets the
    new text embedding (:meth:`ElasticsearchCollection.reencode`)."""
    t0 = time.perf_counter()
    old_meta = col.reload_manifest()
    old = col.aliased.current()
    if old is None:  # the alias went away since the manifest was read
        raise IndexNotFound(f"{col.location} does not exist (no alias {col.alias!r})")
    new = col.aliased.create_next(mapping.index_body(col.es))
    blocked = False
    fix = reencode.meta if reencode else (lambda m: m)
    try:
        put_mapping(col, new, fix(old_meta))
        marks = max_seq_nos(col, old)  # before the point in time opens: nothing slips between
        # the point in time sees refreshed writes only: every write up to the marks is made
        # visible to it (those after them move a mark and are caught up)
        refresh(col, old)
        seen: dict[str, Version] = {}

        def copy() -> Iterator[dict[str, Any]]:
            body = {"query": {"match_all": {}}, "_source": True, "seq_no_primary_term": True}
            for batch in col.pit_pages(body, ["_shard_doc"], index=old):
                for h in batch:
                    seen[h["_id"]] = (h["_seq_no"], h["_primary_term"])
                if reencode:
                    yield from reencode.actions(new, batch)
                else:
                    yield from (copy_action(new, h) for h in batch)

        out = col.writer.write(copy(), f"rebuild into {new}")
        if out.failures:
            raise BulkIndexError(f"{col.location} (rebuild into {new})", out.failures)
        block_writes(col, old)
        blocked = True
        t_block = time.perf_counter()
        # a channel added during the copy goes to the new index too; none is added to the
        # old one between this read and the swap (the replicas' manifest lock)
        with col.manifest_lock.held():
            meta = col.reload_manifest()
            if mapping.channels(meta) != mapping.channels(old_meta):
                put_mapping(col, new, fix(meta))
            caught = catch_up(col, old, new, seen, marks, reencode)
            refresh(col, new)
            col.aliased.swap(new)
        blocked_s = time.perf_counter() - t_block
    except BaseException:
        if blocked:
            unblock_writes(col, old)
        col.aliased.drop(new)
        raise
    col.reload_manifest()
    docs = len(seen) + caught["new"] - caught["deleted"]
    logger.info("rebuilt %s into %s: %d documents; during the copy %d new, %d changed, %d "
                "deleted; writes blocked %.2f s", col.alias, new, docs, caught["new"],
                caught["changed"], caught["deleted"], blocked_s)
    out = {"index": new, "documents": docs, "caught_up": caught,
           "writes_blocked_s": round(blocked_s, 3), "seconds": time.perf_counter() - t0}
    if reencode:
        out["reencoded"] = {"from_vectors": reencode.reused, "encoded": reencode.encoded}
    return out


def put_mapping(col: ElasticsearchCollection, index: str, meta: dict[str, Any]) -> None:
    """``index``'s manifest and channel fields (dense vector, CLIP, hashes) as in ``meta``."""
    meta = {**mapping.manifest(col.es), "dense": meta.get("dense"), "clip": meta.get("clip"),
            "hashes": meta.get("hashes", []), "tuned": meta.get("tuned") or {}}
    props = mapping.channel_properties(meta, col.es)
    col.conn.call(f"update mapping of {index}", lambda c: c.indices.put_mapping(
        index=index, _meta={"semsearch": meta}, properties=props))


def max_seq_nos(col: ElasticsearchCollection, index: str) -> dict[str, int]:
    """The max ``_seq_no`` of every primary shard of ``index`` (every write moves one)."""
    st = col.conn.call(f"shard stats of {index}", lambda c: c.indices.stats(
        index=index, level="shards", metric="docs"))
    return {shard: int(c["seq_no"]["max_seq_no"])
            for shard, copies in st["indices"][index]["shards"].items()
            for c in copies if c["routing"]["primary"]}


def refresh(col: ElasticsearchCollection, index: str) -> None:
    col.conn.call(f"refresh {index}", lambda c: c.indices.refresh(index=index))


def block_writes(col: ElasticsearchCollection, index: str) -> None:
    """Add the ``write`` block; the API answers once writes in flight on ``index`` are done."""
    resp = col.conn.call(f"add write block to {index}",
                         lambda c: c.indices.add_block(index=index, block="write"))
    if not resp.get("acknowledged") or not all(i.get("blocked") for i in resp.get("indices", [])):
        raise BackendUnavailable(f"{col.location}: the write block on {index} was not "
                                 f"acknowledged: {resp}")


def unblock_writes(col: ElasticsearchCollection, index: str) -> None:
    try:
        col.conn.call(f"lift write block of {index}", lambda c: c.indices.put_settings(
            index=index, settings={"index.blocks.write": False}))
    except Exception:  # noqa: BLE001 - the error that made the rebuild fail is the one raised
        logger.error("could not lift the write block of %s: lift it with PUT %s/_settings "
                     '{"index.blocks.write": false}', index, index, exc_info=True)


def catch_up(col: ElasticsearchCollection, old: str, new: str, seen: dict[str, Version],
             marks: dict[str, int], reencode: Reencode | None = None) -> dict[str, int]:
    """With ``old`` write-blocked: copy into ``new`` the documents written to ``old`` since
    the copy's point in time (an id new or with another version) and delete from ``new``
    those deleted since. Nothing to read when no shard's max ``_seq_no`` moved. With
    ``reencode``, the documents copied are encoded with the new encoder (their writers
    encoded them with the old one)."""
    if max_seq_nos(col, old) == marks:
        return {"new": 0, "changed": 0, "deleted": 0}
    # a point in time sees what was refreshed only: without this, writes acknowledged just
    # before the block (not yet refreshed) would be neither copied nor caught up, and lost
    refresh(col, old)
    now: dict[str, Version] = {}
    body = {"query": {"match_all": {}}, "_source": False, "seq_no_primary_term": True}
    for batch in col.pit_pages(body, ["_shard_doc"], 10_000, index=old):
        for h in batch:
            now[h["_id"]] = (h["_seq_no"], h["_primary_term"])
    changed = [i for i, v in now.items() if seen.get(i) != v]
    gone = [i for i in seen if i not in now]

    def actions() -> Iterator[dict[str, Any]]:
        for s in range(0, len(changed), 500):
            ids = changed[s : s + 500]
            resp = col.conn.call(f"read changed documents of {old}",
                                 lambda c, ids=ids: c.mget(index=old, ids=ids))
            found = [d for d in resp["docs"] if d.get("found")]
            if reencode:
                yield from reencode.actions(new, found, cached=False)
            else:
                yield from (copy_action(new, d) for d in found)
        for i in gone:
            yield {"_op_type": "delete", "_index": new, "_id": i}

    out = col.writer.write(actions(), f"catch up {new} with {old}")
    if out.failures:
        raise BulkIndexError(f"{col.location} (rebuild into {new}, catch-up)", out.failures)
    return {"new": sum(1 for i in changed if i not in seen),
            "changed": sum(1 for i in changed if i in seen), "deleted": len(gone)}


def copy_action(index: str, hit: dict[str, Any]) -> dict[str, Any]:
    """An index action copying a stored document (a search hit or an mget doc) to ``index``."""
    src = hit["_source"]
    extra = {k: src[k] for k in mapping.SOURCE_EXCLUDES if k in src}
    return {"_op_type": "index", "_index": index, "_id": hit["_id"],
            "_source": {**document_source(stored_document(hit["_id"], src)), **extra}}
