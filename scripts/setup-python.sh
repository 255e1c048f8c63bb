#!/usr/bin/env bash
# A small Python environment for the tests that check our Python-facing
# outputs (python/dr_reader needs numpy; flit_core builds its wheel
# offline): a venv with pinned numpy and flit_core in a
# per-user cache. Prints the interpreter's path; tests find it there (or
# through DR_PYTHON) and say "skipped" when it is absent.
#
#   scripts/setup-python.sh          # install if missing, print python's path
#
# Idempotent: a second run checks a stamp and returns at once.
set -euo pipefail

PINS=(numpy==2.4.6 flit_core==3.12.0)
CACHE="${DR_PY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dr/pyenv}"
PY="$CACHE/bin/python"
STAMP="$CACHE/.installed"
WANT="${PINS[*]}"

if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "$PY"
  exit 0
fi
echo "setup-python: creating $CACHE with ${PINS[*]}" >&2
rm -rf "$CACHE"
python3 -m venv "$CACHE"
"$PY" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
"$PY" -c "import numpy" >&2
echo "$WANT" > "$STAMP"
echo "$PY"
