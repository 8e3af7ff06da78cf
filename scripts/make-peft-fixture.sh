#!/usr/bin/env bash
# Regenerate crates/dart-core/tests/fixtures/peft-tiny/ with HF transformers + peft;
# with --models, crates/dart-core/tests/fixtures/models/ (scripts/make_model_fixtures.py).
# Creates scripts/.venv-ref (gitignored) from scripts/requirements-ref.txt if missing.
# CI never runs this; only the committed fixture is used.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-ref"
req="$here/requirements-ref.txt"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.requirements-ref.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$req"
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--models" ]; then
  shift
  exec "$venv/bin/python" "$here/make_model_fixtures.py" "$@"
fi
exec "$venv/bin/python" "$here/make_peft_fixture.py" "$@"
