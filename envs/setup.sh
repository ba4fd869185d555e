#!/usr/bin/env bash
# Create .venv at the top of the repository and install dffr into it (idempotent: a
# second run with unchanged requirements returns at once).
#   bash envs/setup.sh                      # this machine's CPU stack
#   DFFR_ENV=cuda bash envs/setup.sh        # a CUDA workstation
set -euo pipefail
cd "$(dirname "$0")/.."
req="envs/requirements-${DFFR_ENV:-cpu}.txt"
[ -f "$req" ] || { echo "no such environment file: $req" >&2; exit 2; }
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
stamp=.venv/.dffr-installed
want=$(cat pyproject.toml "$req" envs/requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing dffr and its dependencies into .venv (first time: several minutes)" >&2
  # this machine's pip config lists local indexes that lack most packages: drop that noise
  .venv/bin/python -m pip install -q -r "$req" 2>&1 | { grep -v "^WARNING: Location" || true; }
  .venv/bin/python -m pip install -q --no-deps -r envs/requirements-nodeps.txt 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
  echo "$want" > "$stamp"
fi
