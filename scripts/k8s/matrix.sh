# The values matrix every check renders (sourced; needs $HELM and $ROOT). Each case is one file of
# `helm template` output named after the case.
GATEWAY_API=(--api-versions gateway.networking.k8s.io/v1/HTTPRoute --api-versions gateway.networking.k8s.io/v1/Gateway)
CRDS=(--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PodMonitor
      --api-versions monitoring.coreos.com/v1/PrometheusRule
      "${GATEWAY_API[@]}")
render_case() { # name args...
  local name=$1; shift
  "$HELM" template tm "$ROOT/charts/task-manager" --namespace task-manager "$@" >"$OUT/$name.yaml"
}
render_matrix() { # out-dir
  OUT=$1
  rm -rf "$OUT"; mkdir -p "$OUT"
  local chart=$ROOT/charts/task-manager
  render_case default "${CRDS[@]}"
  # No Prometheus Operator: pods carry prometheus.io annotations instead of ServiceMonitors.
  render_case no-operator-crds "${GATEWAY_API[@]}"
  render_case kind "${CRDS[@]}" -f "$chart/values-kind.yaml"
  render_case minikube -f "$chart/values-minikube.yaml"
  render_case production-ha "${CRDS[@]}" -f "$chart/values-production.yaml"
  render_case external-db "${CRDS[@]}" -f "$chart/values-external-db.yaml"
  render_case auth-disabled "${GATEWAY_API[@]}" --set gateway.authMode=disabled --set task-service.authMode=disabled \
    --set user-service.authMode=disabled --set project-service.authMode=disabled
  render_case tracing "${CRDS[@]}" --set global.tracing.enabled=true \
    --set global.tracing.endpoint=http://jaeger-collector.observability:4318
  # A JetStream cluster of three NATS servers (routes, PDB, spread).
  render_case nats-cluster "${CRDS[@]}" --set nats.replicas=3 --set global.nats.streamReplicas=3
  # Each service released on its own from the generic chart.
  for preset in "$ROOT"/charts/microservice/presets/*.yaml; do
    local service
    service=$(basename "$preset" .yaml)
    "$HELM" template "$service" "$ROOT/charts/microservice" --namespace task-manager "${CRDS[@]}" -f "$preset" \
      >"$OUT/standalone-$service.yaml"
  done
}
