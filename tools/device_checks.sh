#!/usr/bin/env bash
# The GPU measurements of the open GPU work, as one prepared run on a lent GPU machine (issue order: training
# eager vs compiled at the paper config, generation, the CUDA tests, the live service, the pytorch3d renderer).
# Each step has its own time limit and log in $OUT; a step that fails or runs out of time does not stop the next.
# That machine has Python 3.12 with torch 2.11 + triton but none of our other dependencies and no network: make
# the wheels here first (bash tools/device_wheels.sh -> .whl/, ~7 MB) and carry them:
#   run(command="bash tools/device_checks.sh", carry=[".whl"], timeout_s=590)
# STEPS="train model tests stream render" selects steps; BUDGET_S (default 560) bounds the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled
start=$(date +%s)
budget=${BUDGET_S:-560}
steps=${STEPS:-"env train model tests stream render"}

left() { echo $((budget - ($(date +%s) - start))); }
step() {  # step NAME SECONDS COMMAND...: run with a limit (never past the budget), log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  [[ " $steps " == *" $name "* ]] || return 0
  local t=$(( limit < $(left) ? limit : $(left) ))
  if (( t < 20 )); then echo "[device] $name: skipped, ${t}s left of the budget" | tee -a "$OUT/summary.txt"; return 0; fi
  echo "[device] $name (limit ${t}s): $*" | tee -a "$OUT/summary.txt"
  local t0=$(date +%s)
  timeout -k 10 "$t" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "[device] $name: rc=$rc in $(( $(date +%s) - t0 ))s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
}

if [[ -d .whl ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    > "$OUT/wheels.log" 2>&1 || { echo "[device] wheel install failed"; tail "$OUT/wheels.log"; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi

step env 60 bash -c 'nvidia-smi -L; python3 -c "import torch, deepspeed, omegaconf, webdataset, websockets, reactdiff;
print(torch.__version__, torch.cuda.get_device_name(), deepspeed.__version__, reactdiff.__version__)"'
# issue 13: the paper config, eager vs compiled, and the throughput-vs-batch curve (bf16 as DeepSpeed runs it)
step train 200 python3 tools/bench_model.py --device cuda --sizes paper --steps 25 --train-batches 32,128,512
# issue 13: generation of 750-frame reactions (K = 10) against clips per call
step model 120 python3 tools/bench_model.py --device cuda --sizes paper --steps 25 --gen-clips 1,4,16 --no-compile \
  --train-batches 32
# the CUDA tests (bf16 ZeRO-2, the EMA flat path, DTW backends, sampling GPU vs CPU) and the live service's tests
step tests 150 python3 -m pytest -q -p no:cacheprovider tests/test_train.py::test_gpu_bf16_zero2 \
  tests/test_metrics.py::test_dtw_gpu_backends_agree tests/test_metrics.py::test_gpu_matches_cpu \
  tests/test_online.py::test_sample_command_on_the_gpu_matches_the_cpu tests/test_serve.py
# issue 17: live sessions of the paper model on one GPU (target: 64 in real time)
step stream 150 python3 tools/bench_stream.py --device cuda --size paper --steps 10 --seconds 8 --max-sessions 128 \
  --k 1 4
# issue 12: the pytorch3d rows need its cp311 wheel; this machine's Python is 3.12, so only the torch rows run
step render 60 python3 tools/bench_render.py --device cuda
echo "[device] done in $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
