"""The adapt report: before/after on the held-out pseudo-queries (and on held-out judged
queries when qrels were given), written in the eval report format (results.json, report.md,
report.html, TREC runs) plus ``adapt.md`` with the choices, the reasons and step times."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from semsearch.adapt import heldout as H
from semsearch.adapt.fusion import single_channel_run


def _result(ad: Any, name: str, examples: list, runs: dict[str, Any], tuning: dict[str, Any]) -> Any:
    from semsearch.eval import metrics as M
    from semsearch.eval.configs import EvalConfig
    from semsearch.eval.datasets import EvalDataset
    from semsearch.eval.runner import EvalResult, index_info, latency_percentiles

    qrels = H.qrels_of(examples)
    ds = EvalDataset(name=name, path=ad.work, split="held-out", kind="beir",
                     queries={e.qid: e.query for e in examples}, qrels=qrels)
    with ad.collection() as col:
        info = index_info(col, reused=True)
    configs = [EvalConfig(n, n.split("-")[1] if "-" in n else n, origin="semsearch adapt") for n in runs]
    res = EvalResult(ds, configs, info, baseline="base-hybrid", tuning=tuning)
    for n, run in runs.items():
        res.runs[n] = run
        res.per_query[n] = M.per_query(qrels, run)
        res.means[n] = M.means(res.per_query[n])
        res.recall_curve[n] = M.recall_curve(qrels, run)
        res.latency_ms[n] = latency_percentiles([])  # adapt scores runs, it times nothing
    res.significance = M.significance(qrels, res.runs, res.baseline)
    return res


def _runs(ad: Any, judged: bool) -> dict[str, Any]:
    from semsearch.adapt.runner import _load_json
    from semsearch.eval.tune import _run

    sfx = "-judged" if judged else ""
    base = _load_json(ad.work / f"channels-base{sfx}.json")
    default = ad._default_fusion()
    chosen = ad.state["fusion"]["result"]["chosen"]
    runs = {"base-lexical": single_channel_run(base, "lexical"), "base-dense": single_channel_run(base, "dense"),
            "base-hybrid": _run(base, default["method"], default)}
    adapted = ad._per_query(judged)
    if ad._dense_kept():
        runs["adapted-dense"] = single_channel_run(adapted, "dense")
    runs["adapted-hybrid"] = _run(adapted, chosen["method"], chosen)
    rr = ad.state.get("reranker", {}).get("result", {})
    rr_file = ad.work / "run-rerank.json"
    if "blend" in rr and rr_file.exists() and bool(judged) == bool(ad.examples("judged_dev")):
        # shown whether or not it was turned on (the choices say why)
        runs["adapted-hybrid+rerank" + ("" if rr.get("enabled") else " (off)")] = _load_json(rr_file)
    return runs


def write_adapt_report(ad: Any) -> dict[str, Any]:
    from semsearch.eval import repro
    from semsearch.eval.report import write_report

    out = ad.work / "report"
    fusion = ad.state["fusion"]["result"]
    tuning = {"split": fusion["on"], "queries": fusion["queries"], "metric": "ndcg@10",
              "best": {"chosen": {"score": fusion["score"], "params": fusion["chosen"]}}}
    written: dict[str, Any] = {}
    sets = [("pseudo", ad.examples("dev"), False)]
    if ad.examples("judged_dev"):
        sets.append(("judged", ad.examples("judged_dev"), True))
    for label, examples, judged in sets:
        res = _result(ad, f"{ad.path.name} {label}", examples, _runs(ad, judged), tuning)
        paths = write_report(res, out / label, settings=repro.settings_dump(ad.settings), versions=repro.versions(),
                             models=repro.models(res.index.channels, ad.settings), command=repro.command_line())
        written[label] = {"means": {n: m["ndcg@10"] for n, m in res.means.items()},
                          "report": str(paths["markdown"])}
    (out / "adapt.md").write_text(summary_markdown(ad, written), encoding="utf-8")
    written["summary"] = str(out / "adapt.md")
    return written


def summary_markdown(ad: Any, written: dict[str, Any]) -> str:
    st = ad.state
    base = st["baseline"]["result"]
    lines = [f"# semsearch adapt: {ad.target}", "",
             "## Held-out pseudo-queries: trivial vs informative judge (unadapted engine, nDCG@10)", "",
             "| judge | lexical | dense | hybrid (default) |", "|---|---|---|---|"]
    for k in ("trivial", "informative"):
        r = base[k]
        lines.append(f"| {k} | {r['lexical']:.4f} | {r['dense']:.4f} | {r['hybrid']:.4f} |")
    lines += ["", "trivial: the positive as indexed (it still holds the query's own sentence or title); "
              "informative: a leave-one-out copy where each held-out positive lost that span, "
              "in the lexical index and the dense vectors alike. Every choice below uses the informative judge.", "",
              "## Before / after (nDCG@10)", ""]
    for label, w in written.items():
        if isinstance(w, dict):
            lines.append(f"- {label}: " + ", ".join(f"{n} {v:.4f}" for n, v in w["means"].items())
                         + f" ([report]({Path(w['report']).relative_to(ad.work / 'report')}))")
    lines += ["", "## Choices", ""]
    for step in ("dense", "fusion", "reranker"):
        r = st.get(step, {}).get("result", {})
        lines.append(f"- {step}: {r.get('why', json.dumps(r, default=str)[:300])}")
    applied = st.get("apply", {}).get("result", {})
    lines += ["", f"Recorded in the index manifest (`tuned`): `{json.dumps(applied.get('tuned', {}), default=str)}`"]
    re = applied.get("reencode") or {}
    if re.get("unchanged"):
        lines += ["", f"Text encoder: `{re['encoder']}`, the index's already (adapt run again): no rebuild."]
    if "reencoded" in re:  # the Elasticsearch store: a new physical index behind the alias
        lines += ["", f"Text encoder: `{re['encoder']}` ({re['model_bytes'] / 1e6:.0f} MB, published in the "
                      f"cluster); the documents were rebuilt into `{re['index']}` with their new vectors "
                      f"({re['reencoded']['from_vectors']} from the dense step, {re['reencoded']['encoded']} "
                      f"encoded during the rebuild; writes blocked {re['writes_blocked_s']:.2f} s) and the alias moved."]
    lines += ["", "## Step times", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {s} | {st[s]['seconds']:.0f} |" for s in st if isinstance(st[s], dict) and "seconds" in st[s]]
    lines.append("")
    return "\n".join(lines)
