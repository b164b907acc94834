#!/usr/bin/env bash
# The test command (README, .ci/run): set up the venv with the test extras, lint, start a throwaway local SLURM
# cluster for the launcher tests (root only: it installs Debian's slurm packages if missing), run pytest, stop the cluster.
# Extra arguments go to pytest, e.g. `bash tools/test.sh -k reader`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh test
.venv/bin/ruff check .  # ruff.toml: pyflakes + pycodestyle at line length 120
if [[ $(id -u) == 0 && ${REACTDIFF_SLURM_TESTS:-1} == 1 ]]; then
  export SLURM_LOCAL_DIR=${SLURM_LOCAL_DIR:-/tmp/reactdiff-slurm-tests}
  bash tools/slurm_local.sh up
  trap 'bash tools/slurm_local.sh down || true' EXIT
  eval "$(bash tools/slurm_local.sh env)"
else
  echo "[test] not root (or REACTDIFF_SLURM_TESTS=0): the SLURM tests will be skipped"
fi
.venv/bin/python -m pytest -q tests "$@"
