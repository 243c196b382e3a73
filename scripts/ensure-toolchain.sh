#!/usr/bin/env bash
# Makes sure Node.js >= 24 and the pnpm version pinned in package.json are available. When the machine's
# node is older, installs a real Node 24 binary from the npm registry into .tools/node (seconds, no root).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools/node"
PNPM_VERSION=$(sed -n 's/.*"packageManager": "pnpm@\([^"]*\)".*/\1/p' package.json)

node_ok() { command -v node >/dev/null 2>&1 && node -e 'process.exit(+process.versions.node.split(".")[0] >= 24 ? 0 : 1)'; }

if ! node_ok; then
  if [ ! -x "$TOOLS/bin/node" ] || ! "$TOOLS/bin/node" -e 'process.exit(+process.versions.node.split(".")[0] >= 24 ? 0 : 1)'; then
    echo "Installing Node.js 24 into .tools/node (machine has $(node --version 2>/dev/null || echo none))"
    npm install --global --prefix "$TOOLS" --no-audit --no-fund --loglevel=error node@24 >/dev/null
  fi
  export PATH="$TOOLS/bin:$PATH"
fi
if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  echo "Installing pnpm $PNPM_VERSION into .tools/node"
  npm install --global --prefix "$TOOLS" --no-audit --no-fund --loglevel=error "pnpm@$PNPM_VERSION" >/dev/null
fi
