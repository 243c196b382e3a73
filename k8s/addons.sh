#!/usr/bin/env bash
# Installs what the walkthroughs need around Task Manager, with pinned versions:
#   - Gateway API CRDs (standard channel)
#   - Traefik as the Gateway API implementation *and* Ingress controller (maintained; the community
#     ingress-nginx controller was retired in March 2026), its web entry point on NodePort 30080
#   - Prometheus Operator + Prometheus (kube-prometheus-stack) in namespace `monitoring`, picking up every
#     ServiceMonitor in the cluster
# Usage: k8s/addons.sh [--no-prometheus]      (needs kubectl and helm pointed at the cluster)
set -euo pipefail
GATEWAY_API_VERSION=v1.4.1
TRAEFIK_CHART_VERSION=37.4.0
KUBE_PROMETHEUS_STACK_VERSION=79.5.0

echo "== Gateway API $GATEWAY_API_VERSION CRDs"
kubectl apply --server-side -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"

echo "== Traefik (Gateway API + Ingress) in namespace traefik"
helm repo add traefik https://traefik.github.io/charts --force-update >/dev/null
helm upgrade --install traefik traefik/traefik --version "$TRAEFIK_CHART_VERSION" \
  --namespace traefik --create-namespace \
  --set providers.kubernetesGateway.enabled=true \
  --set providers.kubernetesIngress.enabled=true \
  --set gateway.enabled=false \
  --set service.type=NodePort \
  --set ports.web.nodePort=30080 \
  --set ports.websecure.nodePort=30443 \
  --wait

if [ "${1:-}" != "--no-prometheus" ]; then
  echo "== kube-prometheus-stack in namespace monitoring"
  helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
  helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
    --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace monitoring --create-namespace \
    --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
    --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
    --set grafana.enabled=false \
    --wait
fi
echo "== add-ons ready"
