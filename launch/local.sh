#!/usr/bin/env bash
# One-machine training with several processes (CPU: gloo, GPU: NCCL, one process per GPU).
#
#   bash launch/local.sh [-n NPROC] [-l deepspeed|torchrun] [-p PORT] -- --config configs/demo.yaml train.steps=100
#
#   -n  processes (default: every GPU, or 2 on a CPU-only machine)
#   -l  launcher: deepspeed (default) or torchrun; both give each process RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*
#   -p  rendezvous port (default 29500 + a number from this shell's PID, so parallel runs do not collide)
# Everything after -- goes to `python -m reactdiff.train`. Exit code 75: preempted, checkpoint saved; rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${REACTDIFF_PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
nproc="" launcher=deepspeed port=$((29500 + $$ % 1000))
while getopts "n:l:p:h" opt; do
  case $opt in
    n) nproc=$OPTARG ;;
    l) launcher=$OPTARG ;;
    p) port=$OPTARG ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ ${1:-} == -- ]] && shift
if [[ -z $nproc ]]; then
  nproc=$("$python" -c "import torch; print(torch.cuda.device_count() or 2)")
fi
bin=$(dirname "$python")
case $launcher in
  deepspeed) exec "$bin/deepspeed" --num_accelerators "$nproc" --master_port "$port" --no_local_rank \
               --module reactdiff.train "$@" ;;
  torchrun) exec "$bin/torchrun" --nnodes 1 --nproc_per_node "$nproc" --rdzv_backend c10d \
              --rdzv_endpoint "127.0.0.1:$port" -m reactdiff.train "$@" ;;
  *) echo "launch/local.sh: unknown launcher '$launcher' (deepspeed or torchrun)" >&2; exit 2 ;;
esac
