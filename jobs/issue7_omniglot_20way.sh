#!/usr/bin/env bash
# Issue 7 - Table 2, Omniglot 20-way: 200,000 meta-iterations, one seed (SEEDS="0 1" for more),
# checkpointed every 2,000; each run resumes from the returned checkpoint until it is finished.
# GPU: bash jobs/issue7_omniglot_20way.sh   (carry .data checkpoints; see jobs/README.md)
source "$(dirname "$0")/common.sh" "$@"
# shellcheck disable=SC2086
run_job table --config omniglot_20way --seeds ${SEEDS:-0} --train-tasks 2000 --checkpoint-every 2000
execute_notebook notebooks/04_omniglot.py
