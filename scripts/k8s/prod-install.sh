#!/usr/bin/env bash
# The production install of one service, exactly as the Dockerfile does it: `pnpm deploy --prod` of the
# service into an empty folder, then everything but what `node dist/server.js` needs is removed.
# Usage: scripts/k8s/prod-install.sh <service-dir-name> <empty target dir>   (the workspace must be built)
set -euo pipefail
service=$1
target=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$root/services/$service/package.json" ] || { echo "prod-install: no services/$service" >&2; exit 2; }
[ -f "$root/services/$service/dist/server.js" ] || { echo "prod-install: build first (services/$service/dist/server.js missing)" >&2; exit 2; }
if [ -e "$target" ] && [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
  echo "prod-install: $target is not empty" >&2
  exit 2
fi
# pnpm 11 deploys a workspace package (workspace dependencies injected from their built `files`) with a
# lockfile of its own; --prod leaves every devDependency out.
(cd "$root" && pnpm --filter "./services/$service" deploy --prod --config.confirm-modules-purge=false "$target" >/dev/null)
# The image gets the build output, the production node_modules and package.json ("type": "module"); the
# TypeScript sources, tests and tool configs that `pnpm deploy` copies along stay out.
find "$target" -mindepth 1 -maxdepth 1 ! -name dist ! -name node_modules ! -name package.json -exec rm -rf {} +
find "$target/dist" \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.ts.map' \) -delete
# The gateway serves the web app (docs/web.md, "Delivery"): its static build goes along as web/, where the
# gateway looks first.
if [ "$service" = gateway ]; then
  [ -f "$root/apps/web/dist/index.html" ] || { echo "prod-install: build first (apps/web/dist/index.html missing)" >&2; exit 2; }
  cp -R "$root/apps/web/dist" "$target/web"
  find "$target/web" -name '*.map' -delete
fi
echo "prod-install: $service -> $target ($(du -sh "$target" | cut -f1))"
