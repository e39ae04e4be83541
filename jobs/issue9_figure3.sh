#!/usr/bin/env bash
# Issue 9 - Figure 3: the ten inner-gradient combinations, 40,000 meta-iterations each, test curves
# every 1,000 (250 tasks per point), final accuracy on 10,000 test tasks.
# GPU: bash jobs/issue9_figure3.sh   (carry .data checkpoints; see jobs/README.md)
source "$(dirname "$0")/common.sh" "$@"
run_job figure --figure figure3 --checkpoint-every 2000
execute_notebook notebooks/06_figure3.py
