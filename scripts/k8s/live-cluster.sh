#!/usr/bin/env bash
# The live cluster in CI (../shared/live-cluster next to the checkout): a real single-node Kubernetes that
# `pnpm test:cluster` runs against.
#   scripts/k8s/live-cluster.sh start   Helm from the offline checks' toolchain (scripts/k8s/tools.sh, same
#                                       pinned version: the cluster does not build it again), then up.sh in
#                                       the background (its Go builds overlap the rest of CI)
#   scripts/k8s/live-cluster.sh wait    waits for up.sh, prints its step timings, fails with its log tail
#   scripts/k8s/live-cluster.sh down    down.sh: stops the cluster (and a bring-up in progress), keeps its
#                                       state so the next run is warm
# Environment: LIVE_CLUSTER_DIR (default ../shared/live-cluster), LC_STATE (default /var/lib/live-cluster),
#   LIVE_CLUSTER_LOG (default $TMPDIR/task-manager-live-cluster-up.log).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LC=${LIVE_CLUSTER_DIR:-$(cd "$ROOT/.." && pwd)/shared/live-cluster}
LC_STATE=${LC_STATE:-/var/lib/live-cluster}
LOG=${LIVE_CLUSTER_LOG:-${TMPDIR:-/tmp}/task-manager-live-cluster-up.log}
RC=$LOG.rc
PID=$LOG.pid

# up.sh, retried up to twice when it stops on one known race: its host setup checks the node IP with
# `ip addr show dev lc-node | grep -q …` under `set -o pipefail`, so when grep exits on the match before `ip`
# has written everything, `ip` dies of SIGPIPE, the check reads as "absent", and the `ip addr add` that
# follows fails with "Address already assigned" (seen in CI on a warm start: down.sh keeps lc-node and its
# address). up.sh is idempotent, so running it again is safe. Appends to $LOG; returns up.sh's last code.
run_up() {
  local code=0 attempt
  for attempt in 1 2 3; do
    code=0
    LC_STATE=$LC_STATE bash "$LC/up.sh" >>"$LOG" 2>&1 || code=$?
    [ "$code" = 0 ] && return 0
    grep -q 'Address already assigned' <<<"$(tail -5 "$LOG")" || return "$code"
    echo "live-cluster: up.sh hit the node-IP check race (attempt $attempt); running it again" >>"$LOG"
  done
  return "$code"
}

[ -x "$LC/up.sh" ] || [ -f "$LC/up.sh" ] || { echo "live-cluster: no $LC/up.sh (set LIVE_CLUSTER_DIR)" >&2; exit 1; }

case "${1:-}" in
  start)
    if [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then echo "live-cluster: up.sh already running (pid $(cat "$PID"))"; exit 0; fi
    # The offline checks build this Helm anyway; the cluster's build-go.sh skips a binary already at its
    # pinned module version (go version -m), so copying it saves the cluster's own Helm build.
    source "$ROOT/scripts/k8s/tools.sh"
    lc_helm=$(sed -n 's/^HELM_VERSION=\([^ #]*\).*/\1/p' "$LC/versions.env")
    if [ "$lc_helm" = "$HELM_VERSION" ] && [ ! -x "$LC_STATE/bin/helm" ]; then
      mkdir -p "$LC_STATE/bin" && cp "$HELM" "$LC_STATE/bin/helm"
      echo "live-cluster: Helm $HELM_VERSION from scripts/k8s/tools.sh copied to $LC_STATE/bin"
    fi
    rm -f "$RC"
    # A session of its own, so `down` can stop a bring-up still in progress (its whole process group).
    : >"$LOG"
    export -f run_up
    LC=$LC LC_STATE=$LC_STATE LOG="$LOG" RC="$RC" setsid bash -c '
      s=$SECONDS code=0
      run_up || code=$?
      echo "live-cluster: up.sh exit $code after $(( SECONDS - s ))s" >>"$LOG"
      echo "$code" >"$RC"' </dev/null >/dev/null 2>&1 &
    echo $! >"$PID"
    echo "live-cluster: up.sh started in the background (log $LOG)"
    ;;
  wait)
    [ -f "$PID" ] || { echo "live-cluster: not started (run: $0 start)" >&2; exit 1; }
    while [ ! -f "$RC" ]; do
      kill -0 "$(cat "$PID")" 2>/dev/null || { sleep 1; [ -f "$RC" ] && break; echo "live-cluster: up.sh vanished" >&2; exit 1; }
      sleep 5
    done
    grep -E '^(<== |up: cluster ready|live-cluster: up.sh exit)' "$LOG" || true
    if [ "$(cat "$RC")" != 0 ]; then
      echo "live-cluster: up.sh failed; the end of its log ($LOG):" >&2
      tail -40 "$LOG" >&2
      exit 1
    fi
    # up.sh starts kube-router right after kube-proxy, before the kubelet has registered the node; kube-router
    # then exits ("failed to identify the node by NODE_NAME, hostname or --hostname-override") and nothing
    # enforces NetworkPolicies. up.sh is idempotent and starts what is not running, so a second pass — the
    # node registered by now — starts it (about 15 s).
    LC_RUN=${LC_RUN:-/run/live-cluster}
    router_pid="$LC_RUN/pids/kube-router.pid"
    if [ -x "$LC_STATE/bin/kube-router" ] && { [ ! -f "$router_pid" ] || ! kill -0 "$(cat "$router_pid")" 2>/dev/null; }; then
      echo "live-cluster: kube-router is not running ($(tail -1 "$LC_STATE/logs/kube-router.log" 2>/dev/null)); up.sh again"
      run_up || { tail -40 "$LOG" >&2; exit 1; }
      kill -0 "$(cat "$router_pid")" 2>/dev/null || { echo "live-cluster: kube-router still not running" >&2; tail -5 "$LC_STATE/logs/kube-router.log" >&2; exit 1; }
    fi
    # After a stop (down.sh, or the machine's processes ending) and a start, the add-ons' pods can stay
    # "Running" in the API with no sandbox behind them (seen: CoreDNS and Traefik, so no name resolved and
    # nothing routed). Their Deployments replace them within seconds; a fresh pod is never worse.
    export KUBECONFIG=$LC_STATE/pki/admin.kubeconfig PATH=$LC_STATE/bin:$PATH
    kubectl -n kube-system delete pod -l k8s-app=kube-dns --wait=false >/dev/null
    kubectl -n traefik delete pod --all --wait=false >/dev/null
    kubectl -n kube-system rollout status deployment/coredns --timeout=180s
    kubectl -n traefik rollout status deployment/traefik --timeout=180s
    ;;
  down)
    if [ -f "$PID" ] && [ ! -f "$RC" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then
      echo "live-cluster: stopping the bring-up still in progress (process group $(cat "$PID"))"
      kill -TERM -- "-$(cat "$PID")" 2>/dev/null || true
      sleep 2
    fi
    LC_STATE=$LC_STATE bash "$LC/down.sh"
    ;;
  *)
    echo "usage: $0 start|wait|down" >&2
    exit 2
    ;;
esac
