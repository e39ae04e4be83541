#!/usr/bin/env bash
# The engine's GPU check on a CUDA machine (about 5-7 minutes on an H100):
#   1. the engine's tests with CUDA: graph replays agree with eager steps, graph evaluation agrees;
#   2. the benchmark with the paper's hyper-parameters (synthetic data: no data set is needed).
# Everything lands in RESULTS_DIR (default benchmarks/results/gpu-check): env.txt, tests.log, bench.log,
# bench-cuda.json (copy that one to benchmarks/results/ and commit it). Run from the repository root:
#   bash benchmarks/gpu_check.sh
# REPTILE_COMMIT names the commit where the checkout has no .git. A CPU rehearsal of the same script
# (what tests/test_bench.py runs):
#   BENCH_ARGS="--device cpu --smoke --iters 1 --repeats 1 --eval-tasks 3 --configs omniglot_5way" \
#   TEST_ARGS="-k batch_layout" RESULTS_DIR=/tmp/check bash benchmarks/gpu_check.sh
set -uo pipefail
DIR=${RESULTS_DIR:-$PWD/benchmarks/results/gpu-check}
mkdir -p "$DIR"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv \
    || echo "no nvidia-smi"
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
  echo "commit ${REPTILE_COMMIT:-unknown}"
} 2>&1 | tee "$DIR/env.txt"
# shellcheck disable=SC2086  # the ARGS variables are word lists
timeout 170 $PY -m pytest -q -rs -p no:cacheprovider tests/test_engine.py ${TEST_ARGS:-} 2>&1 | tee "$DIR/tests.log" \
  || status=1
timeout 400 $PY benchmarks/bench.py ${BENCH_ARGS:---device cuda --fuse-adam --budget-s 300} \
  --out "$DIR/bench-cuda.json" 2>&1 | tee "$DIR/bench.log" || status=1
echo "gpu_check exit status $status"
exit $status
