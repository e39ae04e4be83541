#!/usr/bin/env bash
# Here, before a GPU run: put what a job needs into git-ignored folders of this checkout, and show
# what would travel (64 MiB at most, carried folders included).
#   bash jobs/prepare.sh omniglot     .data/omniglot/*.npz (5.8 MB), for issues 6, 7, 9, 10
#   bash jobs/prepare.sh cifar_fs     .data/cifar_fs: JPEG q95 4:4:4 copy of the tiles (~54 MB), issue 8
#   bash jobs/prepare.sh wheels       .whl/: papermill, jupytext, ipykernel, nbval (~20 MB), to execute notebooks there
#   bash jobs/prepare.sh size         sizes only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED=${SHARED:-../shared}
PY=${PYTHON:-python3}
case "${1:-size}" in
  omniglot)
    mkdir -p .data/omniglot
    cp "$SHARED"/datasets/omniglot/images_background.npz "$SHARED"/datasets/omniglot/images_evaluation.npz .data/omniglot/ ;;
  cifar_fs)
    "$PY" -m reptile_lib.cli data pack cifar_fs --out .data --format jpeg --quality 95 --force ;;
  wheels)
    "$SHARED"/device/fetch-wheels.sh .whl ;;
  size) ;;
  *) echo "prepare.sh: unknown target $1 (omniglot | cifar_fs | wheels | size)" >&2; exit 2 ;;
esac
for d in .data .whl checkpoints; do
  [ -e "$d" ] && du -sh "$d"
done
echo "tracked + untracked files: $(git ls-files -co --exclude-standard -z | du -ch --files0-from=- 2>/dev/null | tail -1)"
