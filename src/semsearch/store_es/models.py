"""Model folders kept in Elasticsearch, so that every replica of a store index searches with
the model its vectors were made with, and no replica needs a shared disk.

``semsearch adapt`` fine-tunes the text encoder on one machine; the store index's vectors are
then re-encoded with it, and the manifest's ``dense.encoder`` names the model by content:
``semsearch-model:<sha256>``. The folder itself is published in an index
(``store.elasticsearch.models_index``, :data:`MODEL_INDEX` by default; one per cluster,
shared by every alias: a model is content-addressed, so the same one is stored once): one
document per 2 MiB part of each file (base64, ``binary``: not indexed), then a last document
``<sha256>`` listing the files. A publish that stopped half-way leaves no
listing, so nothing reads its parts, and publishing again completes it.

A replica that reads such a manifest fetches the folder into its model cache
(``store.elasticsearch.model_cache``) once: parts are written to a temporary folder, the
digest of what was read is checked, then the folder is renamed into place (never half there).

A model that no manifest in the cluster names any more (replaced by a later ``adapt``) is
kept until :func:`prune` deletes it (``semsearch models --prune``), only when it was
published longer ago than a grace period, so that an ``adapt`` that has published a model but
not yet moved its alias keeps it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from semsearch.errors import BackendUnavailable, BadInput, IndexIncompatible
from semsearch.indexer.es_common import EsConnection
from semsearch.store_es.mapping import dense_encoder

logger = logging.getLogger(__name__)

MODEL_INDEX = "semsearch-models"
PREFIX = "semsearch-model:"
PART_BYTES = 2 * 1024 * 1024
_MAPPING = {"dynamic": False, "properties": {
    "model": {"type": "keyword"}, "kind": {"type": "keyword"}, "file": {"type": "keyword"},
    "part": {"type": "integer"}, "data": {"type": "binary"}, "published_at": {"type": "double"}}}
_fetching = threading.Lock()


def is_ref(name: str | None) -> bool:
    """Whether an encoder name is a model published here (``semsearch-model:<sha256>``)."""
    return bool(name) and str(name).startswith(PREFIX)


def ref_of(digest: str) -> str:
    return PREFIX + digest


def digest_of(ref: str) -> str:
    """The sha256 a published model's name (``semsearch-model:<sha256>``) carries."""
    return str(ref)[len(PREFIX):]


def manifest_digests(meta: dict[str, Any]) -> list[str]:
    """The digests of the published models a store manifest names (its text encoder, its
    recorded reranker), sorted."""
    refs = (dense_encoder(meta), ((meta.get("tuned") or {}).get("rerank") or {}).get("model"))
    return sorted({digest_of(r) for r in refs if is_ref(r)})


def part_id(digest: str, rel: str, i: int) -> str:
    """The id of part ``i`` of file ``rel`` of a published model."""
    return f"{digest}/{rel}/{i}"


def part_ids(listing: dict[str, Any]) -> list[str]:
    """The ids of every part a model's listing names."""
    return [part_id(listing["model"], e["file"], i) for e in listing["files"] for i in range(int(e["parts"]))]


#: files a replica makes again from the weights when it needs them, left out when the file
#: named beside them is there: a reranker's fp32 ONNX export (90 of a MiniLM reranker's
#: 206 MB) when its int8 export, the one reranking loads by default, is published
_REMADE = {"onnx/model.onnx": "onnx/model_int8.onnx"}


def folder_files(folder: Path) -> list[Path]:
    """The files of a model folder that a replica needs, sorted (training checkpoints,
    hidden files and :data:`_REMADE` exports left out)."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if not p.is_file() or any(part.startswith(".") or part.startswith("checkpoint") for part in rel.parts):
            continue
        instead = _REMADE.get(rel.as_posix())
        if instead is None or not (folder / instead).is_file():
            out.append(p)
    return out


def digest_folder(folder: Path) -> str:
    """sha256 over every file's relative path, size and bytes: the model's identity."""
    h = hashlib.sha256()
    for p in folder_files(folder):
        _digest_entry(h, p.relative_to(folder).as_posix(), p.read_bytes())
    return h.hexdigest()


def _digest_entry(h: Any, rel: str, data: bytes) -> None:
    h.update(f"{rel}\0{len(data)}\0".encode())
    h.update(data)


def ensure_index(conn: EsConnection, index: str) -> None:
    if not conn.call(f"check index {index}", lambda c: c.indices.exists(index=index)):
        # 400 resource_already_exists_exception: made by another process meanwhile, as wanted
        conn.call(f"create index {index}", lambda c: c.options(ignore_status=400).indices.create(
            index=index, mappings=_MAPPING, settings={"number_of_shards": 1}))


def published(conn: EsConnection, digest: str, index: str = MODEL_INDEX) -> dict[str, Any] | None:
    """The listing of a published model (None: not published, or not completely)."""
    if not conn.call(f"check index {index}", lambda c: c.indices.exists(index=index)):
        return None
    got = conn.call(f"read model {digest[:12]}", lambda c: c.options(ignore_status=404).get(
        index=index, id=digest).body)
    return got["_source"] if got.get("found") else None


def publish(conn: EsConnection, folder: Path, *, base: str | None = None, cache: Path | None = None,
            index: str = MODEL_INDEX) -> dict[str, Any]:
    """Store the model folder in ``index`` (nothing is sent when it is there
    already) and copy it into this machine's model ``cache`` (no fetch here). Returns the
    manifest's record of it: ``ref`` (the encoder name), ``sha256``, ``bytes``, ``files`` and
    ``base`` (the model it was fine-tuned from)."""
    folder = Path(folder)
    files = folder_files(folder)
    if not files:
        raise BadInput(f"{folder} holds no model files to publish")
    digest = digest_folder(folder)
    listing = published(conn, digest, index)
    if listing is None:
        ensure_index(conn, index)
        entries = []
        for p in files:
            rel = p.relative_to(folder).as_posix()
            data = p.read_bytes()
            parts = max(1, -(-len(data) // PART_BYTES))
            for i in range(parts):
                chunk = data[i * PART_BYTES : (i + 1) * PART_BYTES]
                body = {"model": digest, "kind": "part", "file": rel, "part": i,
                        "data": base64.b64encode(chunk).decode("ascii")}
                conn.call(f"publish model {digest[:12]} ({rel} part {i + 1}/{parts})",
                          lambda c, body=body, i=i, rel=rel: c.index(
                              index=index, id=part_id(digest, rel, i), document=body))
            entries.append({"file": rel, "bytes": len(data), "parts": parts})
        conn.call(f"refresh {index}", lambda c: c.indices.refresh(index=index))
        listing = {"model": digest, "kind": "listing", "files": entries, "base": base,
                   "published_at": time.time()}
        # the listing last: a reader never finds a model whose parts are not all there
        conn.call(f"publish model {digest[:12]} listing", lambda c: c.index(
            index=index, id=digest, document=listing, refresh="true"))
        logger.info("published model %s (%d files, %.0f MB) into %s", digest[:12], len(entries),
                    sum(e["bytes"] for e in entries) / 1e6, index)
    _seed(folder, files, digest, Path(cache) if cache is not None else default_cache())
    return {"ref": ref_of(digest), "sha256": digest, "files": len(listing["files"]),
            "bytes": sum(int(e["bytes"]) for e in listing["files"]), "base": listing.get("base")}


def _seed(folder: Path, files: list[Path], digest: str, cache: Path) -> None:
    if (cache / digest).is_dir():
        return
    with _staged(cache, digest) as tmp:
        for p in files:
            dest = tmp / p.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)


@contextlib.contextmanager
def _staged(cache: Path, digest: str) -> Iterator[Path]:
    """A temporary folder in ``cache`` to fill; renamed to ``cache/digest`` when the block
    ends without error (whole or not at all), deleted otherwise."""
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=cache))
    try:
        yield tmp
        _into_place(tmp, cache / digest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _into_place(tmp: Path, target: Path) -> None:
    """Rename the complete folder ``tmp`` to ``target`` (whole or not at all); another
    process that put it there first wins."""
    try:
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def default_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "semsearch" / "models"


def fetch(conn: EsConnection, ref: str, cache: Path | None = None, index: str = MODEL_INDEX) -> Path:
    """The local folder of the published model ``ref``, fetched into ``cache`` on first use
    (:class:`IndexIncompatible` when the cluster does not hold it completely, or what was
    read does not match its digest)."""
    if not is_ref(ref):
        raise BadInput(f"{ref!r} is not a published model name ({PREFIX}<sha256>)")
    digest = digest_of(ref)
    cache = Path(cache) if cache is not None else default_cache()
    target = cache / digest
    if target.is_dir():
        return target
    with _fetching:  # one download per process (several threads may search at once)
        if target.is_dir():
            return target
        listing = published(conn, digest, index)
        if listing is None:
            raise IndexIncompatible(f"the store index's text encoder {ref} is not in the cluster's "
                                    f"{index} index (deleted, or its publish did not finish): "
                                    "run `semsearch adapt` again, or re-index the documents")
        with _staged(cache, digest) as tmp:
            h = hashlib.sha256()
            for entry in sorted(listing["files"], key=lambda e: e["file"]):
                rel = entry["file"]
                data = b"".join(_part(conn, index, digest, rel, i) for i in range(int(entry["parts"])))
                _digest_entry(h, rel, data)
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            if h.hexdigest() != digest:
                raise IndexIncompatible(f"model {digest[:12]} read from {index} does not match its "
                                        f"digest (got {h.hexdigest()[:12]}): its parts were changed")
        logger.info("fetched model %s from %s into %s", digest[:12], index, target)
        return target


#: what :func:`fetch` and :func:`publish` leave in a cache: a model's folder (its digest), or
#: the temporary folder of one that died (:func:`_staged`'s prefix)
_CACHED = re.compile(r"[0-9a-f]{64}|\.[0-9a-f]{12}-\S+")


def prune_cache(cache: Path | None, used: Iterable[str], *, older_than: float = 86400.0) -> list[Path]:
    """Delete this machine's copies (``cache``) of the models no manifest names any more
    (``used``: digests, what :func:`in_use` read) fetched or published more than
    ``older_than`` seconds ago, and the temporary folders of fetches that died as long ago;
    returns what went. A process that loaded a model holds it in memory; it reads a model's
    folder again only when a manifest names that model, which a removed one's does not."""
    cache = Path(cache) if cache is not None else default_cache()
    if not cache.is_dir():
        return []
    keep, cutoff, gone = set(used), time.time() - older_than, []
    for p in sorted(cache.iterdir()):
        if not p.is_dir() or not _CACHED.fullmatch(p.name) or p.name in keep or p.stat().st_mtime > cutoff:
            continue
        shutil.rmtree(p, ignore_errors=True)
        logger.info("removed the local copy %s", p)
        gone.append(p)
    return gone


def _part(conn: EsConnection, index: str, digest: str, rel: str, i: int) -> bytes:
    got = conn.call(f"read model {digest[:12]} ({rel} part {i + 1})", lambda c: c.options(
        ignore_status=404).get(index=index, id=part_id(digest, rel, i)).body)
    if not got.get("found"):
        raise IndexIncompatible(f"model {digest[:12]} in {index} lacks part {i + 1} of {rel}")
    return base64.b64decode(got["_source"]["data"])


def listings(conn: EsConnection, index: str = MODEL_INDEX) -> list[dict[str, Any]]:
    """Every completely published model in ``index`` (its listing), oldest first."""
    if not conn.call(f"check index {index}", lambda c: c.indices.exists(index=index)):
        return []
    body = {"query": {"term": {"kind": "listing"}}, "size": 10000, "_source": {"excludes": ["data"]}}
    hits = conn.call(f"list models in {index}", lambda c: c.search(index=index, **body).body)["hits"]["hits"]
    return sorted((h["_source"] for h in hits), key=lambda m: (m.get("published_at") or 0.0, m["model"]))


def in_use(conn: EsConnection) -> dict[str, list[str]]:
    """The published models the cluster's store indexes name (text encoder, reranker), by
    digest: the physical indexes whose manifest names each."""
    got = conn.call("read the manifests of the cluster's indexes",
                    lambda c: c.indices.get_mapping(index="*", expand_wildcards="open,closed").body)
    used: dict[str, list[str]] = {}
    for name, body in sorted(got.items()):
        meta = ((body.get("mappings") or {}).get("_meta") or {}).get("semsearch")
        if not isinstance(meta, dict):
            continue
        for digest in manifest_digests(meta):
            used.setdefault(digest, []).append(name)
    return used


def prune(conn: EsConnection, index: str = MODEL_INDEX, *, older_than: float = 86400.0,
          used: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Delete the models of ``index`` that no manifest in the cluster names (``used``: what
    :func:`in_use` read, read now when None) and that were published more than
    ``older_than`` seconds ago; returns their listings. Each model's parts go before its
    listing, so that a prune that stopped half-way leaves the listing for the next one."""
    used = in_use(conn) if used is None else used
    cutoff = time.time() - older_than
    gone = [m for m in listings(conn, index)
            if m["model"] not in used and (m.get("published_at") or 0.0) <= cutoff]
    for m in gone:
        digest = m["model"]
        # its parts by id (the listing names every one; delete-by-query needs the reindex
        # module), then the listing: a prune that stopped half-way is finished by the next
        ids = part_ids(m)
        for start in range(0, len(ids), 500):
            ops = [{"delete": {"_index": index, "_id": i}} for i in ids[start:start + 500]]
            got = conn.call(f"delete model {digest[:12]} parts", lambda c, ops=ops: c.bulk(operations=ops, refresh=True).body)
            failed = [it["delete"] for it in got["items"] if it["delete"].get("status") not in (200, 404)]
            if failed:
                raise BackendUnavailable(f"{index}: {len(failed)} parts of model {digest[:12]} were not deleted "
                                         f"(first: {failed[0].get('error')}); run the prune again")
        conn.call(f"delete model {digest[:12]} listing", lambda c, d=digest: c.options(ignore_status=404).delete(
            index=index, id=d, refresh="true"))
        logger.info("pruned model %s from %s", digest[:12], index)
    return gone
