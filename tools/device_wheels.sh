#!/usr/bin/env bash
# Wheels a lent GPU machine needs for tools/device_checks.sh (it has Python 3.12 with torch 2.11, triton and numpy
# but none of our own dependencies, and no network): downloaded or built here into .whl/ (git-ignored), then
# carried with the run (`carry: [".whl"]`). Pure-Python packages published as sdists only (antlr4, deepspeed with
# its ops left to JIT) are built into wheels here. Usage: bash tools/device_wheels.sh  (prints the total size).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
py=${REACTDIFF_PYTHON:-.venv/bin/python}
binary=(omegaconf==2.3.0 webdataset==1.0.2 braceexpand==0.1.7 soundfile==0.13.1 cffi==2.0.0 pycparser==2.23
        submitit==1.5.3 websockets==15.0.1 hjson==3.1.0 pydantic==2.12.5 pydantic-core==2.41.5 annotated-types==0.7.0
        typing-inspection==0.4.2 tslearn==0.10.0)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "${binary[@]}"
# sdist-only, pure Python: built here (DeepSpeed's CUDA ops stay JIT, as our pip install has them)
DS_BUILD_OPS=0 "$py" -m pip wheel -q --no-deps --no-build-isolation -w .whl antlr4-python3-runtime==4.9.3 \
  deepspeed==0.19.8
ls -la .whl
du -sh .whl
