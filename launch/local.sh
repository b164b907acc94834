#!/usr/bin/env bash
# One-machine training with several processes (CPU: gloo, GPU: NCCL, one process per GPU).
#
#   bash launch/local.sh [-n NPROC] [-l deepspeed|torchrun] [-p PORT] [-r RETRIES] -- --config configs/demo.yaml ...
#
#   -n, --nproc     processes (default: every GPU, or 2 on a CPU-only machine)
#   -l, --launcher  deepspeed (default) or torchrun; both give each process RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*
#   -p, --port      rendezvous port (default 29500 + a number from this shell's PID, so parallel runs do not collide)
#   -r, --retries   after exit 75 (preempted, checkpoint saved) run again, up to RETRIES times (default 0)
# Everything after -- goes to `python -m reactdiff.train`. Exit code: the trainer's (0 done, 2 bad config, 75
# preempted: rerun to continue) with either launcher (a bare torchrun reports any worker's exit as 1).
# SIGINT/SIGTERM/SIGUSR2 sent here go to every worker (they checkpoint and exit); when the launcher dies (even by
# SIGKILL) its workers checkpoint and exit, and when this shell dies they notice it and do the same: nothing started
# here is left running.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${REACTDIFF_PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
nproc="" launcher=deepspeed port=$((29500 + $$ % 1000)) retries=0
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit "${1:-2}"; }
while [[ $# -gt 0 && $1 != -- ]]; do
  [[ $# -ge 2 || $1 == -h || $1 == --help ]] || usage
  case $1 in
    -n|--nproc) nproc=$2 ;;
    -l|--launcher) launcher=$2 ;;
    -p|--port) port=$2 ;;
    -r|--retries) retries=$2 ;;
    -h|--help) usage 0 ;;
    *) echo "launch/local.sh: unknown option $1" >&2; usage ;;
  esac
  shift 2
done
[[ ${1:-} == -- ]] && shift
[[ $retries =~ ^[0-9]+$ ]] || { echo "launch/local.sh: --retries takes a whole number, got '$retries'" >&2; exit 2; }
if [[ -z $nproc ]]; then
  nproc=$("$python" -c "import torch; print(torch.cuda.device_count() or 2)") || exit 2
fi
bin=$(dirname "$python")
case $launcher in
  deepspeed) cmd=("$bin/deepspeed" --num_accelerators "$nproc" --master_port "$port" --no_local_rank
                  --module reactdiff.train "$@") ;;
  torchrun) cmd=("$bin/torchrun" --nnodes 1 --nproc_per_node "$nproc" --rdzv_backend c10d
                 --rdzv_endpoint "127.0.0.1:$port" -m reactdiff.train "$@") ;;
  *) echo "launch/local.sh: unknown launcher '$launcher' (deepspeed or torchrun)" >&2; exit 2 ;;
esac

exit_file=$(mktemp "${TMPDIR:-/tmp}/reactdiff-exit.XXXXXX")
# given to the launcher only (not exported: this shell's own helpers must not carry the mark)
marks=(REACTDIFF_WATCH_PID=$$ REACTDIFF_EXIT_FILE="$exit_file")  # workers watch this shell; rank 0 writes its code
launcher_pid="" stopping=0
started() {  # every process started under this shell (torchrun puts its workers in sessions of their own)
  grep -lsxz "REACTDIFF_WATCH_PID=$$" /proc/[0-9]*/environ 2>/dev/null | sed 's|/proc/||; s|/environ||'
}
workers() {  # the training processes (their launcher gave them a LOCAL_RANK), not their helpers (wandb's service)
  local pid
  for pid in $(started); do
    grep -qsz "^LOCAL_RANK=" "/proc/$pid/environ" && grep -qsz "^reactdiff.train$" "/proc/$pid/cmdline" && echo "$pid"
  done
}
signal_workers() {
  local pids
  pids=$(workers)
  [[ -z $pids ]] && pids="$launcher_pid $(started)"  # still starting up, or only the launcher's helpers are left
  [[ -n ${pids// /} ]] && kill -s "$1" $pids 2>/dev/null
  return 0
}
forward() { stopping=1; signal_workers "$1"; }  # a signal for us is a signal for every worker
cleanup() {
  local left
  left=$(started)
  [[ -n $left ]] && kill -KILL $left 2>/dev/null
  rm -f "$exit_file"
}
trap 'forward TERM' INT TERM
trap 'forward USR2' USR2
trap cleanup EXIT

run_once() {
  : > "$exit_file"
  env "${marks[@]}" setsid "${cmd[@]}" &
  launcher_pid=$!
  rc=0
  wait "$launcher_pid" || rc=$?
  while kill -0 "$launcher_pid" 2>/dev/null; do  # a trapped signal interrupted wait: wait for the launcher itself
    rc=0
    wait "$launcher_pid" || rc=$?
  done
  launcher_pid=""
  # the launcher is gone (done, or killed): what is left checkpoints and exits, or is killed after 5 minutes
  [[ -n $(started) ]] && signal_workers TERM
  for _ in $(seq 300); do [[ -z $(started) ]] && break; sleep 1; done
  if [[ -n $(started) ]]; then
    echo "launch/local.sh: workers still running 5 minutes after the launcher exited: killing them" >&2
    kill -KILL $(started) 2>/dev/null
  fi
  code=$(cat "$exit_file" 2>/dev/null)
  [[ $rc -ne 0 && -n $code ]] && rc=$code
  return 0
}

attempt=0
while :; do
  run_once
  if [[ $rc -eq 75 && $stopping -eq 0 && $attempt -lt $retries ]]; then
    attempt=$((attempt + 1))
    echo "[local.sh] preempted (exit 75, checkpoint saved): run $((attempt + 1)) of up to $((retries + 1))" >&2
    continue
  fi
  break
done
exit "$rc"
