#!/usr/bin/env bash
# Gateway micro-benchmark: the gateway with every protection on, measured against nginx and a bare
# node:http + undici floor in the same run, on 127.0.0.1 only, pinned with taskset. Bounded: about 11 minutes.
#   bench/gateway/run.sh                     # writes docs/benchmarks-gateway.md
#   BENCH_DURATION_S=5 bench/gateway/run.sh  # shorter runs
# Needs: taskset (util-linux), wrk and nginx (apt-get install wrk nginx).
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in taskset wrk nginx; do
  command -v "$tool" >/dev/null || { echo "gateway bench: '$tool' is missing (apt-get install wrk nginx util-linux)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then echo "gateway bench: needs 2 CPUs (server and load generator pinned apart)" >&2; exit 1; fi

echo "[bench] building service-kit, auth, events and gateway" >&2
for pkg in packages/service-kit packages/auth packages/events services/gateway; do
  (cd "$pkg" && ../../node_modules/.bin/tsc -p tsconfig.build.json)
done

mkdir -p bench-results
BENCH_OUT=bench-results/gateway.json \
BENCH_MARKDOWN=docs/benchmarks-gateway.md \
BENCH_COMMAND="bench/gateway/run.sh" \
  node bench/gateway/run.mjs
echo "[bench] wrote docs/benchmarks-gateway.md and bench-results/gateway.json" >&2
