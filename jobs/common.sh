# Sourced by every jobs/issue*.sh: where data comes from, where results go, CPU smoke mode.
#
#   bash jobs/issueN_*.sh                 on the GPU machine (repository root; $OUT set by the device tool)
#   bash jobs/issueN_*.sh --cpu-smoke     here: the same script on the CPU, smoke profile, OUT=a temporary folder
#
# Any other arguments go to jobs/job.py (later ones win), e.g. --set meta_iters=3 --checkpoint-dir /tmp/ck.
# Environment: MINUTES (the job's whole time on the GPU, default 9), DEVICE (default cuda), PYTHON,
# REPTILE_DATA (GPU default: .data of this checkout), REPTILE_ENGINE (graph | reference),
# EXECUTE_NOTEBOOK=1 to also execute the issue's chapter on the results into $OUT (needs the wheels of
# .whl/ carried; off by default: the chapter only reads results, so the book build executes it on the CPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SMOKE=0
EXTRA=()
for arg in "$@"; do
  if [ "$arg" = "--cpu-smoke" ]; then SMOKE=1; else EXTRA+=("$arg"); fi
done
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  PROFILE=smoke
  MINUTES=${MINUTES:-}
  OUT=${OUT:-$(mktemp -d)}
else
  DEVICE=${DEVICE:-cuda}
  PROFILE=paper
  MINUTES=${MINUTES:-9}
  : "${OUT:?OUT must name the folder whose files come back (the device tool sets it)}"
  export REPTILE_DATA=${REPTILE_DATA:-$PWD/.data}
fi
mkdir -p "$OUT"
echo "job: $(basename "$0") profile=$PROFILE device=$DEVICE minutes=${MINUTES:-none} out=$OUT data=${REPTILE_DATA:-default}" \
  | tee -a "$OUT/log.txt"

run_job() {  # run_job table|figure ARGS...: jobs/job.py with this mode's profile, device, out and time
  local minutes=()
  if [ -n "$MINUTES" ]; then minutes=(--minutes "$MINUTES"); fi
  "$PY" jobs/job.py "$@" --profile "$PROFILE" --device "$DEVICE" --out "$OUT" "${minutes[@]}" "${EXTRA[@]}" \
    2>&1 | tee -a "$OUT/log.txt"
}

execute_notebook() {  # execute_notebook notebooks/NN_x.py: the chapter on this job's results (optional)
  [ "${EXECUTE_NOTEBOOK:-0}" = 1 ] || return 0
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --find-links .whl papermill jupytext ipykernel nbval \
      && "$PY" -m ipykernel install --user --name python3 >/dev/null
  fi
  if ! "$PY" -c "import papermill, jupytext" 2>/dev/null; then
    echo "notebook: papermill/jupytext missing (carry .whl/ to execute $1 here; or execute it on the CPU)" \
      | tee -a "$OUT/log.txt"
    return 0
  fi
  local nb
  nb=$(mktemp -d)/$(basename "${1%.py}").ipynb
  "$PY" -m jupytext --quiet --to ipynb "$1" -o "$nb"
  "$PY" -m papermill "$nb" "$OUT/$(basename "$nb")" -k python3 --language python -p device "$DEVICE" \
    2>&1 | tee -a "$OUT/log.txt"
}
