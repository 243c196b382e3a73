#!/usr/bin/env bash
# Makes sure the pinned Schemathesis (the API fuzzer of test/e2e/api-fuzz.test.ts) is installed in a venv under
# .tools/schemathesis, from PyPI, with the machine's Python 3 (3.10 or newer). Prints the path of its binary.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.32.5
VENV="$PWD/.tools/schemathesis"
BIN="$VENV/bin/schemathesis"
if [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null)" = "schemathesis, version $VERSION" ]; then
  echo "$BIN"
  exit 0
fi
python=""
for candidate in python3.13 python3.12 python3.11 python3.10 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "ensure-schemathesis: needs Python 3.10 or newer with venv (apt-get install python3-venv)" >&2
  exit 1
fi
echo "Installing schemathesis $VERSION into .tools/schemathesis ($("$python" --version))" >&2
rm -rf "$VENV"
"$python" -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
echo "$BIN"
