#!/usr/bin/env bash
# Issue 6 - Table 2, Omniglot 5-way (1- and 5-shot share the model): three seeds, each evaluated on
# 10,000 test tasks (1-/5-shot, transductive and not) and 2,000 training-class tasks (the gap).
# SEEDS="0" for one seed.
# GPU: bash jobs/issue6_omniglot_5way.sh   (carry .data checkpoints; see jobs/README.md)
source "$(dirname "$0")/common.sh" "$@"
# shellcheck disable=SC2086
run_job table --config omniglot_5way --seeds ${SEEDS:-0 1 2} --train-tasks 2000
execute_notebook notebooks/04_omniglot.py
