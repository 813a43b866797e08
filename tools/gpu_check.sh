#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one prepared run of at most about 8 minutes:
#
#   1. the CUDA tests (test_no_host_sync_in_the_step_on_cuda and the others named *cuda*);
#      a CUDA test that skips is a failure here;
#   2. benchmarks/bench_capture.py on the GPU (recorder vs TensorBoard and wandb baselines);
#   3. RegNetX-200MF in the paper profile (batch 128, 100 steps) on CIFAR-10 with the recorder,
#      with the per-step agreement with Theorem 1 that chapter 6 reports.
#
# usage: bash tools/gpu_check.sh   (from the repository root; ADAMDIST_DATA names the data
# folder; without CIFAR-10 there, part 3 is reported as SKIPPED, loudly, and counts as not passed)
# Each part runs under its own time limit; the summary at the end is what a reviewer needs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1
summary=()
status=0

part() {  # part NAME LIMIT_S COMMAND...
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo; echo "=== $name (limit ${limit} s)"
  timeout "$limit" "$@"
  rc=$?
  summary+=("$(printf '%-45s rc=%-3s %4d s' "$name" "$rc" $((SECONDS - t0)))")
  [ "$rc" -eq 0 ] || status=1
}

echo "=== machine"
date -u
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'PY' || { echo "gpu_check: torch sees no CUDA device: nothing to check here" >&2; exit 2; }
import sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")
if not torch.cuda.is_available():
    sys.exit(1)
print("device:", torch.cuda.get_device_name(0))
PY

cuda_tests() {
  local log
  log=$(mktemp)
  "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_capture.py tests/test_simulate.py -k cuda | tee "$log"
  local rc=${PIPESTATUS[0]}
  if grep -qiE "[0-9]+ skipped" "$log"; then
    echo "gpu_check: a CUDA test skipped on a CUDA machine: that is a failure here" >&2
    return 1
  fi
  return "$rc"
}
part "CUDA tests" 180 cuda_tests

part "bench_capture.py --device cuda" 180 \
  "$PY" benchmarks/bench_capture.py --device cuda --rounds 5 --tail-rounds 21

regnetx_paper() {
  ADAMDIST_PROFILE=paper ADAMDIST_CACHE=$(mktemp -d) "$PY" - <<'PY'
import sys, time
from adamdist.data import DataNotFoundError, data_root
from adamdist.experiments.vision import cifar_config, comparison, run, step_summary

config = cifar_config("regnetx_200mf", "paper")
print(f"config: {config}")
start = time.perf_counter()
try:
    stats = run(config)
except DataNotFoundError as err:
    print(f"SKIPPED: no CIFAR-10 under {data_root()} ({err})", file=sys.stderr)
    sys.exit(2)
seconds = time.perf_counter() - start
meta = stats.metadata
print(f"trained {int(stats.steps.max())} steps in {seconds:.0f} s on {meta.get('device')}; "
      f"{len(stats.names)} tensors recorded")
summary = step_summary(comparison(stats))
show = summary[summary.step.isin([1, 2, 3, 4, 5, 10, 12, 20, 25, 50, 70, 90, 100])]
print(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
PY
}
part "RegNetX-200MF, paper profile (CIFAR-10)" 240 regnetx_paper

echo; echo "=== summary ($SECONDS s in all)"
printf '%s\n' "${summary[@]}"
exit "$status"
