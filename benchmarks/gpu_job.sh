#!/usr/bin/env bash
# Issue 5's GPU check in one device call (about 5-7 minutes on the H100, well inside the 10-minute limit):
#   1. the engine's tests with CUDA: graph replays agree with eager steps, graph evaluation agrees;
#   2. the benchmark with the paper's hyper-parameters (synthetic data: nothing has to travel).
# Everything lands in $OUT: env.txt, tests.log, bench.log, bench-cuda.json (copy that one to
# benchmarks/results/ and commit it). Run from the repository root, e.g.
#   REPTILE_COMMIT=$(git rev-parse HEAD) bash benchmarks/gpu_job.sh
# (REPTILE_COMMIT names the commit where the checkout that travels has no .git.)
# A CPU rehearsal of the same script (what tests/test_bench.py runs):
#   BENCH_ARGS="--device cpu --smoke --iters 1 --repeats 1 --eval-tasks 3 --configs omniglot_5way" \
#   TEST_ARGS="-k batch_layout" OUT=/tmp/job bash benchmarks/gpu_job.sh
set -uo pipefail
OUT=${OUT:-$PWD/benchmarks/results/gpu-job}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv \
    || echo "no nvidia-smi"
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
  echo "commit ${REPTILE_COMMIT:-unknown}"
} 2>&1 | tee "$OUT/env.txt"
# shellcheck disable=SC2086  # the ARGS variables are word lists
timeout 170 $PY -m pytest -q -rs -p no:cacheprovider tests/test_engine.py ${TEST_ARGS:-} 2>&1 | tee "$OUT/tests.log" \
  || status=1
timeout 400 $PY benchmarks/bench.py ${BENCH_ARGS:---device cuda --fuse-adam --budget-s 300} \
  --out "$OUT/bench-cuda.json" 2>&1 | tee "$OUT/bench.log" || status=1
echo "gpu_job exit status $status"
exit $status
