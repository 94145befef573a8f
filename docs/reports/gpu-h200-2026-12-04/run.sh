#!/usr/bin/env bash
# device call B (on the machine call A left warm): faiss-gpu-cu12 (+ ranx for eval), the gpu
# tests, SciFact index + zero-label adapt + eval, then the CPU-vs-GPU benchmark
exec > >(tee $OUT/b.log) 2>&1
set -x
S=/tmp/devsite
[ -f $S/READY ] || { echo "no READY: a fresh machine, call A first"; exit 3; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $S .dev/b/whl/*.whl || exit 1
CU=/usr/local/cuda-13.0/targets/x86_64-linux/lib
export LD_LIBRARY_PATH=$PWD/.dev/b/lib:$CU:$LD_LIBRARY_PATH CUBLAS13=$CU/libcublas.so.13 _FAISS_WHEEL_DISABLE_CUDA_PRELOAD=1
export PYTHONPATH=$S:$PWD/src HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SEMSEARCH_NO_PROGRESS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
timeout 60 python3 - <<'PY'
import faiss, numpy as np
print("faiss", faiss.__version__, "gpus", faiss.get_num_gpus())
x = np.random.default_rng(0).standard_normal((20000, 64), dtype=np.float32)
cpu = faiss.IndexFlatIP(64); cpu.add(x)
res = faiss.StandardGpuResources()
g = faiss.index_cpu_to_gpu(res, 0, cpu)
D, I = g.search(x[:100], 5); D2, I2 = cpu.search(x[:100], 5)
print("raw faiss GPU flat: same ids as CPU", (I == I2).mean())
b = faiss.IndexBinaryFlat(64); c = np.random.default_rng(1).integers(0, 256, (5000, 8), dtype=np.uint8); b.add(c)
gb = faiss.GpuIndexBinaryFlat(res, b); print("raw binary GPU", (gb.search(c[:50], 3)[1] == b.search(c[:50], 3)[1]).mean())
PY
for t in tests/indexer/test_vector_faiss.py tests/images/test_binary_index.py tests/encoders/test_sbert.py; do
  timeout 60 python3 -m pytest -p no:cacheprovider -m gpu $t -q -rs 2>&1 | grep -v "^  File \"/opt\|^  File \"<frozen" | tail -25
done
W=/tmp/adapt; D=/tmp/devdata/scifact; export SEMSEARCH_TEXT_ENCODER__PASSAGES__ENABLED=true
t=$SECONDS; timeout 100 python3 -m semsearch index --input $D --index $W/scifact-base 2>&1 | tail -3; echo "TIMING index: $((SECONDS-t)) s"
cp -r $W/scifact-base $W/scifact-adapted
t=$SECONDS; timeout ${ADAPT_S:-200} python3 -m semsearch adapt --index $W/scifact-adapted 2>&1 | grep -v "it/s]\|s/it]\|example/s]"; echo "TIMING adapt: $((SECONDS-t)) s"
mkdir -p $OUT/base $OUT/adapted
if [ -f $W/scifact-adapted/adapt/report/adapt.md ]; then
  cp $W/scifact-adapted/adapt/report/adapt.md $OUT/
  t=$SECONDS; timeout 60 python3 -m semsearch eval --dataset $D --split test --index $W/scifact-base --out $W/eval-base --configs lexical,dense,hybrid --latency-queries 20 2>&1 | tail -6; echo "TIMING eval base: $((SECONDS-t)) s"
  t=$SECONDS; timeout 60 python3 -m semsearch eval --dataset $D --split test --index $W/scifact-adapted --out $W/eval-adapted --configs lexical,dense,hybrid --latency-queries 20 2>&1 | tail -6; echo "TIMING eval adapted: $((SECONDS-t)) s"
  cp $W/eval-base/report.md $W/eval-base/results.json $OUT/base/ ; cp $W/eval-adapted/report.md $W/eval-adapted/results.json $OUT/adapted/
fi
SEMSEARCH_SHARED_DATA=/tmp/devdata SEMSEARCH_BENCH_RESULTS=$OUT timeout ${BENCH_S:-90} python3 benchmarks/bench_gpu.py --texts 2000 --n 100000 --queries 500
