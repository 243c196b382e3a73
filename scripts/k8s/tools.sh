#!/usr/bin/env bash
# Builds the pinned Kubernetes tools through the Go module proxy into .tools/bin (cached: a re-run with the
# same versions builds nothing) and defines lay_out_schemas for the offline JSON schemas.
# Sourced by check.sh, render.sh and docs.sh; exports HELM, KUBECONFORM, KUBE_SCORE, HELM_DOCS.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN" "$TOOLS/cache"

HELM_VERSION=v4.3.1
KUBECONFORM_VERSION=v0.8.0
KUBE_SCORE_VERSION=v1.20.0
# The chart READMEs are generated from values.yaml (scripts/k8s/docs.sh).
HELM_DOCS_VERSION=v1.14.2
# Kubernetes versions every rendered object is validated against: the oldest the charts support
# (Chart.yaml kubeVersion) and the newest released.
KUBERNETES_VERSIONS="1.30.0 1.37.0"
# Schemas of the Kubernetes API, strict variants, shipped on PyPI.
KUBERNETES_VALIDATE_VERSION=1.37.0
# CRDs whose objects the charts render, from the projects' own Go modules.
GATEWAY_API_VERSION=v1.4.1
PROMETHEUS_OPERATOR_VERSION=v0.85.0

command -v go >/dev/null || { echo "tools: Go is required (https://go.dev/dl)" >&2; exit 1; }

go_tool() { # name module version
  local name=$1 module=$2 version=$3 stamp="$BIN/.$1.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then return; fi
  echo "tools: building $name $version (go install, first run only)"
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "$module@$version"
  echo "$version" >"$stamp"
}
go_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION"
go_tool helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$HELM_DOCS_VERSION"

# Our schema converter (scripts/k8s/verify/cmd/schemas), rebuilt when its source changes.
VERIFY="$ROOT/scripts/k8s/verify"
verify_sum=$(cat "$VERIFY"/go.mod "$VERIFY"/go.sum "$VERIFY"/cmd/schemas/*.go | sha256sum | cut -c1-16)
if [ "$(cat "$BIN/.k8s-schemas.version" 2>/dev/null)" != "$verify_sum" ]; then
  (cd "$VERIFY" && go build -o "$BIN/k8s-schemas" ./cmd/schemas)
  echo "$verify_sum" >"$BIN/.k8s-schemas.version"
fi

# lay_out_schemas DIR: the JSON schemas kubeconform validates against, written to DIR (a temporary folder:
# the check never leaves generated JSON in the work tree for linters to trip over). The wheel and the Go
# modules are cached (.tools/cache, the Go module cache), so this takes a second or two.
lay_out_schemas() {
  local out=$1 wheel gw po v
  wheel=$(ls "$TOOLS/cache"/kubernetes_validate-"$KUBERNETES_VALIDATE_VERSION"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$TOOLS/cache" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    wheel=$(ls "$TOOLS/cache"/kubernetes_validate-"$KUBERNETES_VALIDATE_VERSION"-*.whl | head -1)
  fi
  gw=$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  po=$(GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  for v in $KUBERNETES_VERSIONS; do
    "$BIN/k8s-schemas" -wheel "$wheel" -kubernetes "$v" -out "$out/$v" \
      "$gw/config/crd/standard/gateway.networking.k8s.io_gateways.yaml" \
      "$gw/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" \
      "$po/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
      "$po/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml" \
      "$po/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
  done
}

export HELM="$BIN/helm" KUBECONFORM="$BIN/kubeconform" KUBE_SCORE="$BIN/kube-score" HELM_DOCS="$BIN/helm-docs" KUBERNETES_VERSIONS
