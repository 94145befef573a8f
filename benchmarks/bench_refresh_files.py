"""What a near-real-time write costs on disk: one-document ``upsert()`` + ``refresh()`` on a
small collection (2,000 SciFact documents, lexical + a 384-dimension dense channel of random
unit vectors, so encoding costs nothing), median over ``--writes`` writes, plus the files of
the one-document segment each refresh writes and the fsyncs a refresh makes (Python's
``os.fsync`` calls: segment files, folders, deletion bitmaps, the manifest; SQLite's own, in
the upsert, are not counted). ``--no-fsync`` counts them but skips them: what the rest of a
refresh costs.

Two kinds of write: a new document (a new segment), and an update of a document of the base
segment (a new segment plus a deletion bitmap for the old version). Background merges are off
and the refresh interval is an hour, so every refresh is the one the script asks for and the
one-document segments pile up as they would between two merges.

One version (the ``semsearch`` on the path), or two or more compared: ``--compare
LABEL=SRC ...`` runs the script under each ``PYTHONPATH=SRC`` in turn, ``--rounds`` times
(alternating, since fsync times on a shared disk drift by 3x within minutes), and reports
each version's median over its rounds. It uses only the public ``semsearch.Collection``:

    git archive 1946414 src | tar -x -C /tmp/old
    python benchmarks/bench_refresh_files.py --compare 1946414=/tmp/old/src container=src --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import load_jsonl, require_scifact, save, table  # noqa: E402

DIM = 384


class RandomEncoder:
    """A unit vector per text, drawn from a generator seeded by the text's hash."""

    name, dim = "bench/random-unit-vectors", DIM

    def encode(self, texts, *, batch_size=None):  # noqa: ANN001, ANN201
        out = np.empty((len(texts), DIM), np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha1(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(DIM)
            out[i] = v / np.linalg.norm(v)
        return out


def document(d: dict, i: int):  # noqa: ANN201
    from semsearch.documents import Document

    return Document(id=d["_id"], title=d["title"], text=d["text"],
                    metadata={"year": 1990 + i % 30, "topic": ("bio", "med", "chem")[i % 3]})


def newest_segment(index: Path) -> Path:
    return max((p for p in (index / "segments").iterdir() if p.is_dir()), key=lambda p: p.name)


def measure(args: argparse.Namespace) -> dict:
    import semsearch
    from semsearch.collection import Collection
    from semsearch.config import Settings

    corpus = load_jsonl(require_scifact() / "corpus.jsonl")
    base, extra = corpus[: args.docs], corpus[args.docs : args.docs + args.writes]
    if len(extra) < args.writes:
        raise SystemExit(f"SciFact has {len(corpus)} documents: fewer than --docs + --writes")
    s = Settings()
    s.no_progress = True
    s.indexing.background_merges = False
    s.indexing.refresh_interval = 3600
    s.text_encoder.passages.enabled = False
    work = Path(tempfile.mkdtemp(prefix="semsearch-bench-refresh-"))

    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        if not args.no_fsync:
            real_fsync(fd)

    results: dict[str, dict] = {}
    try:
        with Collection.create(work / "ix", s, encoder=RandomEncoder()) as col:
            col.upsert([document(d, i) for i, d in enumerate(base)])
            col.refresh()
            for kind in ("new", "update"):
                total, refresh, fsyncs, files, folders = [], [], [], set(), set()
                for i in range(args.writes):
                    if kind == "new":
                        doc = document(extra[i], args.docs + i)
                    else:
                        d = base[(i * 37) % len(base)]
                        doc = document({**d, "text": d["text"] + f" revised {i}"}, i)
                    t0 = time.perf_counter()
                    col.upsert([doc])
                    t1 = time.perf_counter()
                    synced.clear()
                    os.fsync = counting_fsync
                    try:
                        col.refresh()
                    finally:
                        os.fsync = real_fsync
                    t2 = time.perf_counter()
                    total.append(t2 - t0)
                    refresh.append(t2 - t1)
                    fsyncs.append(len(synced))
                    seg = newest_segment(work / "ix")
                    files.add(sum(1 for p in seg.rglob("*") if p.is_file()))
                    folders.add(1 + sum(1 for p in seg.rglob("*") if p.is_dir()))
                results[kind] = {
                    "upsert_refresh_median_ms": round(statistics.median(total) * 1000, 2),
                    "upsert_refresh_p90_ms": round(sorted(total)[int(0.9 * (len(total) - 1))] * 1000, 2),
                    "refresh_median_ms": round(statistics.median(refresh) * 1000, 2),
                    "fsyncs_per_refresh": statistics.median(fsyncs),
                    "files_per_segment": sorted(files),
                    "folders_per_segment": sorted(folders),
                }
            layout = sorted(str(p.relative_to(seg)) for p in seg.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"label": args.label, "semsearch": str(Path(semsearch.__file__).parent), "docs": args.docs,
            "writes": args.writes, "dim": DIM, "results": results, "one_document_segment": layout}


def compare(args: argparse.Namespace) -> dict:
    """Each version in a subprocess, alternating, ``args.rounds`` times."""
    versions = dict(v.split("=", 1) for v in args.compare)
    runs: dict[str, list[dict]] = {label: [] for label in versions}
    for r in range(args.rounds):
        for label, src in versions.items():
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
                subprocess.run([sys.executable, __file__, "--label", label, "--docs", str(args.docs),
                                "--writes", str(args.writes), "--json-out", out.name,
                                *(["--no-fsync"] if args.no_fsync else [])], env=env, check=True)
                run = json.loads(Path(out.name).read_text())
            runs[label].append(run)
            print(f"round {r + 1} {label}: " + ", ".join(
                f"{k} {v['upsert_refresh_median_ms']} ms" for k, v in run["results"].items()), flush=True)
    summary = {}
    for label, rs in runs.items():
        summary[label] = {"semsearch": rs[0]["semsearch"], "one_document_segment": rs[0]["one_document_segment"]}
        for kind in rs[0]["results"]:
            per = [r["results"][kind] for r in rs]
            summary[label][kind] = {
                "upsert_refresh_median_ms": statistics.median(p["upsert_refresh_median_ms"] for p in per),
                "upsert_refresh_median_ms_per_round": [p["upsert_refresh_median_ms"] for p in per],
                "refresh_median_ms": statistics.median(p["refresh_median_ms"] for p in per),
                "fsyncs_per_refresh": per[0]["fsyncs_per_refresh"],
                "files_per_segment": per[0]["files_per_segment"],
                "folders_per_segment": per[0]["folders_per_segment"],
            }
    return {"docs": args.docs, "writes": args.writes, "rounds": args.rounds, "dim": DIM, "versions": summary}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--writes", type=int, default=50)
    ap.add_argument("--label", default="current", help="names the result file (refresh_files_<label>.json)")
    ap.add_argument("--compare", nargs="+", metavar="LABEL=SRC", help="versions to compare (see above)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-fsync", action="store_true",
                    help="count a refresh's fsyncs but skip them (what the rest of the refresh costs)")
    ap.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)  # one run of --compare
    args = ap.parse_args()
    if args.json_out:
        args.json_out.write_text(json.dumps(measure(args)))
        return
    if args.compare:
        res = compare(args)
        name = "refresh_files_" + "_vs_".join(res["versions"]) + ("_no_fsync" if args.no_fsync else "")
        rows = [(label, kind, r) for label, v in res["versions"].items() for kind, r in v.items()
                if isinstance(r, dict)]
    else:
        res = measure(args)
        name = f"refresh_files_{args.label}"
        rows = [(args.label, kind, r) for kind, r in res["results"].items()]
    path = save(name, {**res, "fsync": not args.no_fsync, "load_average": list(os.getloadavg())})
    table([{"version": label, "write": kind, "upsert+refresh p50 ms": r["upsert_refresh_median_ms"],
            "refresh p50 ms": r["refresh_median_ms"], "fsyncs": r["fsyncs_per_refresh"],
            "files": ",".join(map(str, r["files_per_segment"])),
            "dirs": ",".join(map(str, r["folders_per_segment"]))} for label, kind, r in rows],
          f"one-document upsert + refresh on {args.docs} documents (fsyncs per refresh, files and "
          "folders of the new segment)")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
