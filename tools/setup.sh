#!/usr/bin/env bash
# Set up a machine for reactdiff: a virtual environment with the pinned torch/torchaudio and reactdiff itself
# (editable). Idempotent: a second run only checks. Usage: bash tools/setup.sh [test]
#   REACTDIFF_VENV=path   where the venv goes (default: .venv in the repository)
#   REACTDIFF_PYTHON=exe  the Python that creates it (default: python3, needs >= 3.10)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${REACTDIFF_VENV:-.venv}
python=${REACTDIFF_PYTHON:-python3}
extras="[serve]"  # the demo also streams a clip through the live service
case ${1:-} in
  "") ;;
  test) extras="[test]" ;;
  *) echo "usage: bash tools/setup.sh [test]" >&2; exit 2 ;;
esac
if [[ ! -x $venv/bin/python ]]; then
  echo "[setup] creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
echo "[setup] installing reactdiff$extras into $venv (torch==2.11.0, torchaudio==2.11.0: the first time downloads a few GB)"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -e ".$extras"
"$venv/bin/python" -c "import torch, torchaudio, reactdiff; print(f'[setup] ok: reactdiff {reactdiff.__version__}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}')"
