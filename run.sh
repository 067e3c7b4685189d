#!/usr/bin/env bash
# One entry point that sets itself up: creates .venv and installs kato-stream (once per
# pyproject change), then runs the command.
#   ./run.sh dev [args]    the embedded stack + worker + gateway, with sample data
#   ./run.sh test [args]   the test suite (pytest args pass through)
#   ./run.sh <anything>    the kato-stream CLI
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.kato-stream-installed
want=$(sha1sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  echo "$want" > "$stamp"
fi
cmd=${1:-help}
shift || true
case "$cmd" in
  test) exec .venv/bin/python -m pytest "$@" ;;
  lint) .venv/bin/ruff check . && .venv/bin/ruff format --check . && exec .venv/bin/mypy ;;
  *) exec .venv/bin/kato-stream "$cmd" "$@" ;;
esac
