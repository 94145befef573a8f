"""Backups of a store index with Elasticsearch's snapshot API (``semsearch snapshot`` and
``semsearch restore`` with the store configured).

A snapshot holds the physical index behind the alias (documents, vectors, hashes and the
manifest in its mapping) and, when the manifest names models ``semsearch adapt`` published
(:mod:`semsearch.store_es.models`), the models index too: a restore elsewhere would otherwise
name an encoder or reranker the cluster does not hold. The snapshot's metadata records the
alias, the physical index and the models' digests, so that a restore needs nothing else.

A restore brings the physical index back under the configured alias as its next version
(``<alias>-vN``) and moves the alias to it in one call, like a rebuild; the models the
manifest names that the cluster lacks are copied from the snapshot's models index (restored
under a temporary name, deleted afterwards). The repository is the operator's (``PUT
_snapshot/<name>``; an ``fs`` repository needs ``path.repo`` on every node).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from semsearch.errors import BackendUnavailable, BadInput
from semsearch.indexer.es_common import AliasedIndex, EsConnection
from semsearch.store_es import models

logger = logging.getLogger(__name__)


def _repository(conn: EsConnection, repository: str) -> None:
    got = conn.call(f"read snapshot repository {repository}", lambda c: c.options(ignore_status=404).snapshot.get_repository(
        name=repository).body)
    if repository not in got:
        raise BadInput(f"no snapshot repository {repository!r} in the cluster: register one first, e.g. "
                       f"PUT _snapshot/{repository} {{\"type\": \"fs\", \"settings\": {{\"location\": \"...\"}}}} "
                       "(an fs location must be under path.repo on every node)")


def snapshot(col: Any, repository: str, name: str | None = None) -> dict[str, Any]:
    """Snapshot the store index ``col`` (an ElasticsearchCollection) and the models its
    manifest names into ``repository``; waits until it is complete."""
    conn, es = col.conn, col.es
    _repository(conn, repository)
    physical = col.aliased.current()
    if physical is None:
        raise BadInput(f"{col.location} does not exist: nothing to snapshot")
    meta = col.reload_manifest()
    digests = models.manifest_digests(meta)
    indices = [physical] + ([es.models_index] if digests else [])
    name = name or f"{col.alias}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}".lower()
    docs = conn.call(f"count {physical}", lambda c: c.count(index=physical).body)["count"]
    t0 = time.perf_counter()
    got = conn.call(f"snapshot {name} into {repository}", lambda c: c.snapshot.create(
        repository=repository, snapshot=name, indices=",".join(indices), include_global_state=False,
        wait_for_completion=True, metadata={"semsearch": {
            "alias": col.alias, "index": physical, "models_index": es.models_index if digests else None,
            "models": digests, "documents": docs}}).body)
    snap = got["snapshot"]
    if snap.get("state") != "SUCCESS":
        raise BackendUnavailable(f"snapshot {name} of {physical} ended {snap.get('state')}: "
                                 f"{snap.get('failures') or snap.get('reason')}")
    logger.info("snapshot %s/%s: %s (%d documents, %d models)", repository, name, indices, docs, len(digests))
    return {"repository": repository, "snapshot": name, "indices": indices, "documents": docs, "models": digests,
            "seconds": round(time.perf_counter() - t0, 2)}


def restore(conn: EsConnection, es: Any, repository: str, name: str, *, force: bool = False) -> dict[str, Any]:
    """Restore snapshot ``name`` of ``repository`` behind the configured alias
    (``es.index``) as its next physical version and move the alias to it; copy the models
    its manifest names that ``es.models_index`` lacks. An alias that points to an index
    already is replaced only with ``force`` (its old physical index is deleted)."""
    _repository(conn, repository)
    got = conn.call(f"read snapshot {name}", lambda c: c.options(ignore_status=404).snapshot.get(
        repository=repository, snapshot=name).body)
    snaps = got.get("snapshots") or []
    if not snaps:
        raise BadInput(f"no snapshot {name!r} in repository {repository!r}")
    meta = (snaps[0].get("metadata") or {}).get("semsearch")
    if not isinstance(meta, dict) or not meta.get("index"):
        raise BadInput(f"snapshot {name!r} was not written by `semsearch snapshot` (no semsearch metadata)")
    aliased = AliasedIndex(conn, es.index)
    if aliased.targets() and not force:
        raise BadInput(f"Elasticsearch store index {es.index!r} exists: restore into another "
                       "(SEMSEARCH_STORE__ELASTICSEARCH__INDEX) or pass --force to replace it")
    missing = [d for d in meta.get("models") or [] if models.published(conn, d, es.models_index) is None]
    if missing and not meta.get("models_index"):
        raise BadInput(f"snapshot {name!r} names models it does not hold: {missing}")
    t0 = time.perf_counter()
    new = f"{es.index}-v{max(aliased.versions(), default=0) + 1}"
    _restore_as(conn, repository, name, meta["index"], new)
    copied = _copy_models(conn, repository, name, meta["models_index"], es.models_index, missing) if missing else []
    aliased.swap(new)
    docs = conn.call(f"count {new}", lambda c: c.count(index=new).body)["count"]
    logger.info("restored %s/%s into %s behind %s (%d documents, models copied: %s)", repository, name, new,
                es.index, docs, copied)
    return {"repository": repository, "snapshot": name, "index": new, "alias": es.index, "documents": docs,
            "models_copied": copied, "seconds": round(time.perf_counter() - t0, 2)}


def _restore_as(conn: EsConnection, repository: str, name: str, index: str, new: str) -> None:
    got = conn.call(f"restore {index} from {name} as {new}", lambda c: c.snapshot.restore(
        repository=repository, snapshot=name, indices=index, rename_pattern="(.+)", rename_replacement=new,
        include_aliases=False, include_global_state=False, wait_for_completion=True,
        ignore_index_settings=["index.blocks.write"]).body)  # a snapshot taken during a rebuild's block
    shards = (got.get("snapshot") or {}).get("shards") or {}
    if shards.get("failed"):
        conn.call(f"delete index {new}", lambda c: c.indices.delete(index=new, ignore_unavailable=True))
        raise BackendUnavailable(f"restore of {index} from snapshot {name} failed on {shards['failed']} shard(s)")


def _copy_models(conn: EsConnection, repository: str, name: str, source: str, target: str,
                 digests: list[str]) -> list[str]:
    """Copy the models ``digests`` from the snapshot's models index (restored under a
    temporary name) into ``target``: parts first, the listing last, as a publish does."""
    tmp = f"{target}-restore-{uuid.uuid4().hex[:8]}"
    _restore_as(conn, repository, name, source, tmp)
    try:
        models.ensure_index(conn, target)
        for digest in digests:
            listing = models.published(conn, digest, tmp)
            if listing is None:
                raise BadInput(f"snapshot {name!r} does not hold model {digest[:12]} completely")
            for pid in models.part_ids(listing):
                doc = conn.call(f"read {pid}", lambda c, pid=pid: c.get(index=tmp, id=pid).body)["_source"]
                conn.call(f"copy {pid}", lambda c, pid=pid, doc=doc: c.index(index=target, id=pid, document=doc))
            conn.call(f"copy model {digest[:12]} listing", lambda c, d=digest, doc=listing: c.index(
                index=target, id=d, document=doc, refresh="true"))
    finally:
        conn.call(f"delete index {tmp}", lambda c: c.indices.delete(index=tmp, ignore_unavailable=True))
    return digests
