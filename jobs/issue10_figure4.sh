#!/usr/bin/env bash
# Issue 10 - Figure 4: Reptile / shared-tail / separate-tail FOMAML over inner iterations, inner batch
# and outer step (39 runs, reptile_lib.sweeps.FIGURE4_AXES), 4,000 meta-iterations per run, 2,000 test tasks per point.
# GPU: bash jobs/issue10_figure4.sh   (carry .data checkpoints; see jobs/README.md)
source "$(dirname "$0")/common.sh" "$@"
run_job figure --figure figure4 --checkpoint-every 1000
execute_notebook notebooks/07_figure4.py
