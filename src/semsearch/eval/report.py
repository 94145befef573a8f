"""Write an evaluation: results.json (stable schema), TREC runs, report.md and a
self-contained report.html (inline SVG charts, inline CSS, no scripts, no external assets)."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from semsearch.eval import charts
from semsearch.eval import metrics as M
from semsearch.eval.datasets import write_trec_run
from semsearch.eval.runner import EvalResult, IndexInfo, compared_name

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SUMMARY_METRICS = [*M.METRICS, M.NO_RELEVANT]
#: published BM25 nDCG@10 on SciFact test (BEIR paper 0.665; Pyserini/bm25s flat 0.679)
BM25_SCIFACT = (0.665, 0.679)
SANITY_TOLERANCE = 0.01
WORST_N = 10


def sanity(result: EvalResult) -> dict[str, Any] | None:
    ds = result.dataset
    if "scifact" not in ds.name.lower() or ds.split != "test" or "lexical" not in result.means:
        return None
    v = result.means["lexical"]["ndcg@10"]
    lo, hi = BM25_SCIFACT
    ok = lo - SANITY_TOLERANCE <= v <= hi + SANITY_TOLERANCE
    return {"metric": "ndcg@10", "config": "lexical", "value": v, "published": [lo, hi],
            "tolerance": SANITY_TOLERANCE, "ok": ok,
            "line": f"BM25 sanity: lexical nDCG@10 on SciFact test = {v:.4f}; published {lo:.3f}-{hi:.3f}; "
                    f"{'within' if ok else 'NOT within'} {SANITY_TOLERANCE} of that range"}


def best_config(result: EvalResult) -> str:
    return max(result.means, key=lambda n: result.means[n]["ndcg@10"])


def worst_queries(result: EvalResult, name: str, n: int = WORST_N) -> list[dict[str, Any]]:
    pq = result.per_query[name]["ndcg@10"]
    out = []
    for qid in sorted(pq, key=lambda q: (pq[q], q))[:n]:
        run = result.runs[name].get(qid, {})
        top = list(run)[:3]
        rel = [d for d, r in result.dataset.qrels[qid].items() if r > 0]
        first = next((i for i, d in enumerate(run, 1) if d in rel), None)
        out.append({"qid": qid, "query": result.dataset.queries[qid], "ndcg@10": pq[qid],
                    "relevant": rel, "first_relevant_rank": first, "top3": top})
    return out


def results_json(result: EvalResult, *, settings: dict[str, Any], versions: dict[str, str],
                 models: dict[str, Any], command: str) -> dict[str, Any]:
    ds = result.dataset
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": ds.name,
        "split": ds.split,
        "configs": {n: result.means[n] for n in result.runs},
        "latency_ms": result.latency_ms,
        "versions": versions,
        "settings": settings,
        "dataset_info": {"path": str(ds.path), "kind": ds.kind, "queries": len(ds.queries),
                         "judgements": sum(len(v) for v in ds.qrels.values()), "sha256": ds.checksum()},
        "config_params": {c.name: c.describe() for c in result.evaluated},
        "skipped": result.skipped,
        "baseline": result.baseline,
        "significance": {"test": result.stat_test, "correction": "holm", "alpha": result.alpha,
                         "vs_baseline": result.significance},
        "recall_curve": {n: {str(k): v for k, v in c.items()} for n, c in result.recall_curve.items()},
        "index": vars(result.index),
        "compared_indexes": {n: vars(i) for n, i in result.compared.items()},
        "tuning": result.tuning,
        "sanity": sanity(result),
        "eval_choices": M.EVAL_CHOICES,
        "models": models,
        "command": command,
        "best_config": best_config(result),
        "worst_queries": worst_queries(result, best_config(result)),
        "per_query": result.per_query,
    }


def _mark(result: EvalResult, name: str, metric: str) -> str:
    s = result.significance.get(name, {}).get(metric)
    if not s or not s["significant"]:
        return ""
    better = result.means[name][metric] > result.means[result.baseline][metric]
    if metric == M.NO_RELEVANT:
        better = not better
    return " ▲" if better else " ▼"


def _summary_rows(result: EvalResult) -> list[list[str]]:
    rows = []
    for c in result.evaluated:
        cells = [c.name] + [f"{result.means[c.name][m]:.4f}{_mark(result, c.name, m)}" for m in SUMMARY_METRICS]
        lat = result.latency_ms[c.name]
        rows.append(cells + [format_ms(lat["p50"]), format_ms(lat["p95"])])
    return rows


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"  # None: latency not measured


def _headers() -> list[str]:
    return ["config", *SUMMARY_METRICS, "p50 ms", "p95 ms"]


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _index_line(label: str, idx: IndexInfo) -> str:
    built = (f"built in {idx.build_seconds:.1f} s" if idx.build_seconds is not None else "reused (build time not measured here)")
    return (f"{label}: {idx.path} ({idx.documents} documents, lexical {idx.lexical_backend}, channels "
            f"{', '.join(f'{k}={v}' for k, v in idx.channels.items()) or 'none'}); {built}"
            + (f"; WARNING: {idx.missing_judged} judged documents are not in the index" if idx.missing_judged else ""))


def _latency_line(result: EvalResult) -> str:
    timed = next(iter(result.latency_ms.values()), {}).get("queries", 0)
    if not timed:
        return "Latency: not measured"
    return (f"Latency: the first {timed} queries searched one at a time (query encoding, channels, fusion, "
            "reranking included), in ms; metrics come from the same searches run in batches")


def _notes(result: EvalResult, data: dict[str, Any]) -> list[str]:
    notes = [
        f"Dataset: {data['dataset']} split {data['split']}: {data['dataset_info']['queries']} queries, "
        f"{data['dataset_info']['judgements']} judgements; sha256 {data['dataset_info']['sha256']}",
        _index_line("Index", result.index),
        *(_index_line(f"Index `{n}` (configs `{compared_name('…', n)}`, searched with its own encoder and "
                      "tuned defaults)", i)
          for n, i in result.compared.items()),
        f"Significance: paired {'t-test' if result.stat_test == 'student' else 'randomisation test'} (ranx) "
        f"against baseline `{result.baseline}`, Holm-corrected over all configs x metrics, alpha {result.alpha}: "
        "▲ significantly better, ▼ significantly worse",
        _latency_line(result),
    ]
    if data["sanity"]:
        notes.append(data["sanity"]["line"])
    for name, why in result.skipped.items():
        notes.append(f"Skipped `{name}`: {why}")
    if result.tuning:
        for method, b in result.tuning["best"].items():
            notes.append(f"Tuned on {result.tuning['split']} ({result.tuning['queries']} queries, "
                         f"{result.tuning['metric']} {b['score']:.4f}): {method} {json.dumps(b['params'])}")
    return notes


def _repro(data: dict[str, Any]) -> dict[str, Any]:
    return {"command": data["command"], "versions": data["versions"], "models": data["models"],
            "dataset_sha256": data["dataset_info"]["sha256"], "config_params": data["config_params"],
            "settings": data["settings"]}


def write_markdown(path: Path, result: EvalResult, data: dict[str, Any]) -> None:
    best = data["best_config"]
    parts = [f"# Retrieval evaluation: {data['dataset']} ({data['split']})", ""]
    parts += [_md_table(_headers(), _summary_rows(result)), ""]
    parts += [f"- {n}" for n in _notes(result, data)]
    parts += ["", "## Metric choices", ""] + [f"- {c}" for c in M.EVAL_CHOICES]
    parts += ["", "## Charts", "", "![metrics](charts/metrics.svg)", "", "![recall@k](charts/recall.svg)",
              "", "![nDCG@10 deltas](charts/deltas.svg)", ""]
    parts += [f"## Worst queries of the best config ({best})", ""]
    parts += [_md_table(["qid", "nDCG@10", "first relevant rank", "query", "relevant", "top 3"],
                        [[w["qid"], f"{w['ndcg@10']:.3f}", str(w["first_relevant_rank"] or "-"), w["query"],
                          ", ".join(w["relevant"]), ", ".join(w["top3"])] for w in data["worst_queries"]])]
    parts += ["", "## Reproducibility", "", "```json", json.dumps(_repro(data), indent=2), "```", ""]
    path.write_text("\n".join(parts), encoding="utf-8")


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;max-width:80rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}td.q{text-align:left;max-width:30rem}pre{background:#f6f6f6;padding:1rem;overflow:auto;font-size:.8rem}
.chart svg{max-width:100%;height:auto}"""


def _html_table(headers: list[str], rows: list[list[str]], *, left: set[int] | None = None) -> str:
    left = left or set()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=q' if i in left else ''}>{html.escape(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(path: Path, result: EvalResult, data: dict[str, Any], svgs: dict[str, str]) -> None:
    e = html.escape
    best = data["best_config"]
    worst = [[w["qid"], f"{w['ndcg@10']:.3f}", str(w["first_relevant_rank"] or "-"), w["query"],
              ", ".join(w["relevant"]), ", ".join(w["top3"])] for w in data["worst_queries"]]
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(f"semsearch eval: {data['dataset']} {data['split']}")}</title>
<style>{CSS}</style></head><body>
<h1>Retrieval evaluation: {e(data['dataset'])} ({e(data['split'])})</h1>
{_html_table(_headers(), _summary_rows(result))}
<ul>{''.join(f'<li>{e(n)}</li>' for n in _notes(result, data))}</ul>
<h2>Metric choices</h2><ul>{''.join(f'<li>{e(c)}</li>' for c in M.EVAL_CHOICES)}</ul>
<h2>Metrics per configuration</h2><div class="chart">{svgs['metrics']}</div>
<h2>Recall@k</h2><div class="chart">{svgs['recall']}</div>
<h2>Per-query nDCG@10 difference vs {e(result.baseline)}</h2><div class="chart">{svgs['deltas']}</div>
<h2>Worst queries of the best configuration ({e(best)})</h2>
{_html_table(["qid", "nDCG@10", "first relevant rank", "query", "relevant", "top 3"], worst, left={3, 4, 5})}
<h2>Reproducibility</h2><pre>{e(json.dumps(_repro(data), indent=2))}</pre>
</body></html>
"""
    path.write_text(doc, encoding="utf-8")


def write_report(result: EvalResult, out: Path, *, settings: dict[str, Any], versions: dict[str, str],
                 models: dict[str, Any], command: str) -> dict[str, Path]:
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "charts").mkdir(exist_ok=True)
    data = results_json(result, settings=settings, versions=versions, models=models, command=command)
    paths = {"results": out / "results.json", "markdown": out / "report.md", "html": out / "report.html"}
    paths["results"].write_text(json.dumps(data, indent=2), encoding="utf-8")
    for name, run in result.runs.items():
        write_trec_run(out / "runs" / (name.replace(':', '@') + ".trec"), run, tag=name)  # ':' is not portable in file names
    svgs = {
        "metrics": charts.metric_bars(result.means, SUMMARY_METRICS),
        "recall": charts.recall_curve(result.recall_curve),
        "deltas": charts.delta_histogram({n: pq["ndcg@10"] for n, pq in result.per_query.items()},
                                         result.baseline, "nDCG@10"),
    }
    for k, s in svgs.items():
        (out / "charts" / f"{k}.svg").write_text(s, encoding="utf-8")
    write_markdown(paths["markdown"], result, data)
    write_html(paths["html"], result, data, svgs)
    return paths
