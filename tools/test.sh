#!/usr/bin/env bash
# The test command (README, .ci/run): set up the venv with the test extras, lint, start a throwaway local SLURM
# cluster for the launcher tests (root only: it installs Debian's slurm packages if missing), run pytest, stop the cluster.
# Extra arguments go to pytest, e.g. `bash tools/test.sh -k reader`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh test
.venv/bin/ruff check .  # ruff.toml: pyflakes + pycodestyle at line length 120
# the live page's browser test needs Debian's chromium + chromium-driver (root installs them; else it skips)
if [[ $(id -u) == 0 && ${REACTDIFF_BROWSER_TESTS:-1} == 1 ]] && ! command -v chromedriver >/dev/null; then
  echo "[test] apt-get install chromium chromium-driver (the live page's browser test)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
    chromium-driver >/dev/null || echo "[test] could not install chromium: the browser test will skip"
fi
if [[ $(id -u) == 0 && ${REACTDIFF_SLURM_TESTS:-1} == 1 ]]; then
  export SLURM_LOCAL_DIR=${SLURM_LOCAL_DIR:-/tmp/reactdiff-slurm-tests}
  bash tools/slurm_local.sh up
  trap 'bash tools/slurm_local.sh down || true' EXIT
  eval "$(bash tools/slurm_local.sh env)"
else
  echo "[test] not root (or REACTDIFF_SLURM_TESTS=0): the SLURM tests will be skipped"
fi
.venv/bin/python -m pytest -q tests "$@"
