#!/usr/bin/env bash
# `pnpm bench`: the database read path micro-benchmark, the whole local system under load, V8 memory settings,
# then the outbox's cost and the event latency, each figure twice; writes bench-results/*.json (raw),
# docs/benchmarks.json and the tables in docs/benchmarks.md.
#   pnpm bench            # about 15 minutes on 2 cores
#   pnpm bench --smoke    # about 5 minutes: proves the benchmark still works, writes no docs
# Installs nothing. Needs taskset (util-linux), wrk and nginx for every figure; when one is missing it
# says so and skips only the figures that need it. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# Node 24 as ./run provisions it (scripts/ensure-toolchain.sh), when it is there.
[ -x .tools/node/bin/node ] && export PATH="$PWD/.tools/node/bin:$PATH"

SMOKE=""
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE="--smoke" ;;
    *) echo "usage: pnpm bench [--smoke]" >&2; exit 2 ;;
  esac
done

missing=()
for tool in taskset wrk nginx; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "" >&2
  echo "[bench] !!! missing: ${missing[*]} (apt-get install -y wrk nginx util-linux); the figures needing them are SKIPPED" >&2
  echo "" >&2
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "[bench] !!! only $(nproc) CPU: servers and load generator cannot be pinned apart; figures are not comparable" >&2
fi

echo "[bench] building the packages and services (tsc)" >&2
for pkg in packages/service-kit packages/auth packages/events services/user-service services/project-service services/task-service services/gateway; do
  (cd "$pkg" && ../../node_modules/.bin/tsc -p tsconfig.build.json)
done

mkdir -p bench-results
run() { node --conditions=@task-manager/source --import tsx "$@"; }
echo "[bench] 1/4 task-service database read path" >&2
run bench/db-read.ts $SMOKE >bench-results/db-read.json
echo "[bench] 2/4 the local system under load" >&2
run bench/system.ts $SMOKE >bench-results/system.json
echo "[bench] 3/4 V8 memory settings on the task-service under load" >&2
TUNED="--max-semi-space-size=4 --max-old-space-size=160"
if ! command -v wrk >/dev/null || ! command -v taskset >/dev/null; then
  echo "[bench] !!! SKIPPED the memory settings sweep: it needs wrk and taskset" >&2
  rm -f bench-results/memory.json
elif [ -n "$SMOKE" ]; then
  BENCH_DURATION_S=1 run bench/memory.ts "" "$TUNED" >bench-results/memory.json
else
  # Interleaved, twice: the machine's noise hits each setting alike.
  SETTINGS=("" "--max-semi-space-size=2" "--max-old-space-size=128" "--max-semi-space-size=2 --max-old-space-size=128" "$TUNED")
  BENCH_DURATION_S=6 run bench/memory.ts "${SETTINGS[@]}" "${SETTINGS[@]}" >bench-results/memory.json
fi
echo "[bench] 4/4 domain events: the outbox's cost on a create, end-to-end latency" >&2
run bench/events.ts $SMOKE >bench-results/events.json
BENCH_COMMAND="pnpm bench${SMOKE:+ $SMOKE}" run bench/report.ts $SMOKE
if [ -z "$SMOKE" ]; then
  node_modules/.bin/biome format --write docs/benchmarks.json >/dev/null 2>&1 || true
fi
