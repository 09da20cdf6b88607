#!/usr/bin/env bash
# The GPU check in one command (docs/operations.md, "The GPU check"): install the carried wheels on top of
# the machine's own packages, run the GPU suite (what `make test-gpu` runs) and the GPU benchmarks, and
# write OUT_DIR/gpu_check.json (scripts/gpu_summary.py) and OUT_DIR/gpu_check.log.
#
#   scripts/gpu_check.sh OUT_DIR [all|tests|bench|install]
#
# `tests`: the GPU suite (training first, then coding). `bench`: the gloo DDP test and the GPU figures.
# PYTHON: the interpreter (default .venv/bin/python if there, else python3). GPU_WHEELS: the wheel folder
# (default .gpu_wheels; skipped when absent). TESTS_TIMEOUT / BENCH_TIMEOUT: seconds per phase (defaults
# fit one 10-minute device command for `tests` or `bench` alone). CTRLIC_GPU_IMAGES=N: first N Kodak images.
# PYTEST_ARGS: more arguments for the GPU suite's pytest (e.g. "-k anchor_stf").
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR [all|tests|bench|install]}
PHASE=${2:-all}
case $PHASE in all|tests|bench|install) ;; *) echo "gpu_check: unknown phase '$PHASE' (all, tests, bench, install)" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
LOG=$OUT/gpu_check.log
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
WHEELS=${GPU_WHEELS:-.gpu_wheels}
SITE=${GPU_SITE:-/tmp/ctrlic-gpu-site}
PHASES=()

run_phase() {  # name timeout command...: run it, record "name=exit_code:seconds"
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "=== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  PHASES+=(--phase "$name=$rc:$((SECONDS - start))")
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
}

START=$(date +%s)
echo "=== gpu_check $(date -u +%FT%TZ) phase=$PHASE python=$PY root=$ROOT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  run_phase install 300 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH=$SITE:$ROOT
else
  echo "=== install: no wheels in $WHEELS; using the packages already installed"
  export PYTHONPATH=$ROOT
fi
"$PY" -c "import sys, torch, numpy, lightning, compressai, hydra, constriction; print('python', sys.version.split()[0], \
'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'lightning', lightning.__version__, \
'compressai', compressai.__version__)" || PHASES+=(--phase "imports=1:0")

if [ "$PHASE" = all ] || [ "$PHASE" = tests ]; then
  rm -f "$OUT/gpu_report.jsonl"
  CTRLIC_GPU_REPORT=$OUT/gpu_report.jsonl run_phase tests "${TESTS_TIMEOUT:-540}" "$PY" -m pytest -m gpu -q -rs \
      -p no:cacheprovider --timeout 300 --junitxml="$OUT/junit_gpu.xml" ${PYTEST_ARGS:-} \
      tests/test_gpu_training.py tests/test_gpu_coding.py
fi
if [ "$PHASE" = all ] || [ "$PHASE" = bench ]; then
  run_phase gloo 200 "$PY" -m pytest -q -rs -p no:cacheprovider --timeout 190 --junitxml="$OUT/junit_gloo.xml" \
      tests/test_ddp.py -k two_gloo_processes
  run_phase bench "${BENCH_TIMEOUT:-360}" "$PY" -m benchmarks.run_all --only train_step_gpu memory_gpu \
      codec_time_gpu coding_overhead_paper
fi
"$PY" scripts/gpu_summary.py "$OUT" --since "$START" "${PHASES[@]}"
