#!/usr/bin/env bash
# Issue 8 - Table 1 on CIFAR-FS (Mini-ImageNet's hyper-parameters, 32x32 inputs): seeds 0 1 2 (SEEDS to
# change), monitored on the validation classes, evaluated on the 20 test classes (10,000 tasks) and
# 2,000 training-class tasks. The GPU copy of the data is the JPEG q95 (4:4:4) pack in .data/cifar_fs
# (`bash jobs/prepare.sh cifar_fs`); the results name it (cifar_fs/test@jpeg-q95).
# GPU: bash jobs/issue8_cifar_fs.sh   (carry .data checkpoints; no room for .whl: see jobs/README.md)
source "$(dirname "$0")/common.sh" "$@"
# shellcheck disable=SC2086
run_job table --config cifar_fs_5way --seeds ${SEEDS:-0 1 2} --train-tasks 2000
execute_notebook notebooks/05_cifar_fs.py
