#!/usr/bin/env bash
# semsearch adapt on SciFact with no labels (only corpus.jsonl), then the test split judged
# for the base and the adapted index side by side. Usage:
#   DATA=../shared/data/scifact WORK=/tmp/adapt-cache benchmarks/adapt_scifact.sh [adapt options]
# e.g. the measured run (docs/adapt.md): --dense-max-steps 30 --dense-batch-size 16 --dense-max-seq-length 128 --dense-lr 5e-5
# the zero-label run on the default passage index (docs/adapt.md, 2026-12-04): PASSAGES=true and no option
# with the train qrels (docs/adapt.md, "With the SciFact train qrels"): --queries "$DATA/queries.jsonl"
#   --qrels "$DATA/qrels/train.tsv" --sample 600 --dense-max-steps 64 --dense-batch-size 16 --dense-max-seq-length 128 --dense-lr 5e-5
set -euo pipefail
DATA=${DATA:-../shared/data/scifact}; WORK=${WORK:-/tmp/adapt-cache}
PY=${PYTHON:-python}
export HF_HUB_OFFLINE=1 SEMSEARCH_NO_PROGRESS=1
# the measured runs built their base index before passages became the default; PASSAGES=true
# builds it with passages (adapt then re-encodes every passage with the adapted encoder)
export SEMSEARCH_TEXT_ENCODER__PASSAGES__ENABLED=${PASSAGES:-false}
mkdir -p "$WORK"
[ -f "$WORK/scifact-base/manifest.json" ] || /usr/bin/time -f "index: %e s" $PY -m semsearch index --input "$DATA" --index "$WORK/scifact-base"
[ -f "$WORK/scifact-adapted/manifest.json" ] || cp -r "$WORK/scifact-base" "$WORK/scifact-adapted"
/usr/bin/time -f "adapt: %e s" $PY -m semsearch adapt --index "$WORK/scifact-adapted" "$@"
$PY -m semsearch eval --dataset "$DATA" --split test --index "$WORK/scifact-base" --out "$WORK/eval-base" \
  --configs lexical,dense,hybrid --latency-queries 20
$PY -m semsearch eval --dataset "$DATA" --split test --index "$WORK/scifact-adapted" --out "$WORK/eval-adapted" \
  --configs lexical,dense,hybrid,hybrid-index --latency-queries 20
