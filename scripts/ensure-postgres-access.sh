#!/usr/bin/env bash
# PostgreSQL refuses to run as root, so when the tests or `./run start` run as root the embedded server runs
# as the `postgres` user, which must reach its binaries under node_modules: every directory from / to the
# checkout needs search permission for others. `mktemp -d` (and many home directories) are 0700, so add o+x
# where it is missing: search only, nobody can list those directories.
set -euo pipefail
[ "$(id -u)" = 0 ] || exit 0
dir=$(cd "$(dirname "$0")/.." && pwd -P)
while [ "$dir" != / ]; do
  if [ -z "$(find "$dir" -maxdepth 0 -perm -o=x)" ]; then
    echo "Letting the postgres user reach the checkout: chmod o+x $dir"
    chmod o+x "$dir"
  fi
  dir=$(dirname "$dir")
done
