#!/usr/bin/env bash
# Before a device run (bench/gpu_suite.sh on a lent GPU): what the run needs that does not travel.
#   .gpu/lego_official   lego's 100 training views and the 25 official test views (cp -rL: its
#                        train/ is a link), ~53 MB
#   .whl/                the wheels the GPU box lacks (hydra-core, omegaconf, antlr4, plyfile)
# Both folders are git-ignored; name them in the device tool's `carry`, and start the command with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
mkdir -p .gpu .whl
if [[ ! -d .gpu/lego_official/train ]]; then  # train/ is a link to ../lego/train (a plain file where links did not survive)
  mkdir -p .gpu/lego_official
  cp -L "$SHARED"/lego_official/transforms_*.json .gpu/lego_official/
  cp -rL "$SHARED/lego_official/test" .gpu/lego_official/test
  cp -rL "$SHARED/lego/train" .gpu/lego_official/train
fi
PY=${PYTHON:-.venv/bin/python}
for name in hydra-core omegaconf plyfile; do  # the versions this checkout's venv uses
  spec="$name==$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform any -d .whl "$spec"
done
ls .whl/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1 || "$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
du -sh .gpu .whl
