"""Offline relevance evaluation: datasets (BEIR, caption sets, TREC runs), runner, metrics
(ranx), significance tests, fusion tuning on a training split, and reports.

Entry point: :func:`semsearch.eval.api.run_eval` (what ``semsearch eval`` runs)."""
