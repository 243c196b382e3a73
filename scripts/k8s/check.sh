#!/usr/bin/env bash
# Every offline check of the Kubernetes delivery, in the order a failure is cheapest to read:
#   1. tools (helm v4, kubeconform, kube-score, helm-docs) built through the Go module proxy, schemas laid out
#   2. helm lint --strict of both charts with every values file
#   3. helm template over the values matrix -> <tmp>/rendered/<case>.yaml
#   4. kubeconform: every rendered object against the Kubernetes OpenAPI schemas (strict) and the CRDs
#   5. kube-score, then our own policy tests (Go, scripts/k8s/verify) on the rendered output
#   6. k8s/ rendered manifests are what the chart renders today, chart READMEs what helm-docs generates (no drift)
#   7. each built service: production install into an empty folder, started with the env, port, probes
#      and commands its Deployment renders, against a real PostgreSQL
# Needs: Go, Python 3 (pip download of the schema wheel), Node 24 + pnpm, and `pnpm build` done for step 7.
# Tools and downloads are cached in .tools; everything generated goes to a temporary folder.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
step() { printf '\n\033[1m-- k8s: %s\033[0m (%ss)\n' "$*" "$SECONDS"; }

step "tools and schemas"
# Node 24 and pnpm for the production installs and the services (same provisioning as .ci/run).
bash scripts/ensure-toolchain.sh
export PATH="$ROOT/.tools/node/bin:$PATH"
source scripts/k8s/tools.sh
"$HELM" version --short
# Generated files (schemas, rendered cases, production installs) live in one temporary folder.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/task-manager-k8s.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SCHEMAS="$WORK/schemas"
RENDERED="$WORK/rendered"
lay_out_schemas "$SCHEMAS"

step "helm dependency build + lint --strict"
"$HELM" dependency build charts/task-manager >/dev/null
"$HELM" lint --strict charts/microservice -f charts/microservice/presets/task-service.yaml
for preset in charts/microservice/presets/*.yaml; do
  "$HELM" lint --strict --quiet charts/microservice -f "$preset"
done
"$HELM" lint --strict charts/task-manager
for values in charts/task-manager/values-*.yaml; do
  "$HELM" lint --strict --quiet charts/task-manager -f "$values"
done

step "helm template over the values matrix"
source scripts/k8s/matrix.sh
render_matrix "$RENDERED"
ls "$RENDERED"

step "combinations that cannot work fail the install with a message"
# expect_failure "what" "message part" helm-template-args...
expect_failure() {
  local what=$1 message=$2 out; shift 2
  if out=$("$HELM" template tm charts/task-manager --namespace task-manager "$@" 2>&1 >/dev/null); then
    echo "helm template rendered $what; it must fail" >&2; exit 1
  fi
  grep -qF "$message" <<<"$out" || { echo "$what failed without saying why:" >&2; echo "$out" >&2; exit 1; }
  echo "refused: $what"
}
expect_failure "an HTTPRoute on a cluster without the Gateway API" "does not serve the Gateway API"
expect_failure "two user-service replicas without shared signing keys" "needs shared signing keys" \
  "${GATEWAY_API[@]}" --set user-service.signingKeys.generate=false

step "kubeconform (strict) against Kubernetes $KUBERNETES_VERSIONS + CRD schemas"
for version in $KUBERNETES_VERSIONS; do
  "$KUBECONFORM" -strict -summary -kubernetes-version "$version" \
    -schema-location "$SCHEMAS/$version/kubernetes/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$SCHEMAS/$version/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "$RENDERED"
done

step "kube-score"
# Ignored checks, and why:
#  - container-image-pull-policy: images are pinned (tag or digest), so IfNotPresent is correct, and kind
#    and minikube run images loaded into the node that `Always` would try to pull.
#  - container-security-context-user-group-id: the official postgres and postgres_exporter images run as
#    their own built-in users (70, 65534); our service images run as 10001.
#  - deployment-has-host-podantiaffinity: pods are spread with topologySpreadConstraints instead, which
#    kube-score does not recognise.
#  - deployment-replicas, for the kind and minikube cases only: one replica per service on a laptop is
#    the point of those values.
# Scored one file at a time: the cases reuse object names, which kube-score would cross-match.
for file in "$RENDERED"/*.yaml; do
  laptop=()
  case "$(basename "$file")" in kind.yaml | minikube.yaml) laptop=(--ignore-test deployment-replicas) ;; esac
  findings=$("$KUBE_SCORE" score --output-format ci "${laptop[@]}" \
    --ignore-test container-image-pull-policy \
    --ignore-test container-security-context-user-group-id \
    --ignore-test deployment-has-host-podantiaffinity \
    "$file" | grep -E '^\[(CRITICAL|WARNING)\]' || true)
  if [ -n "$findings" ]; then
    echo "$findings"
    echo "kube-score: findings in $(basename "$file")" >&2
    exit 1
  fi
done
echo "kube-score: no warnings and no critical findings in $(ls "$RENDERED" | wc -l) rendered cases"

step "policy tests on the rendered output"
(cd scripts/k8s/verify && RENDERED_DIR="$RENDERED" REPO_ROOT="$ROOT" go test -count=1 -v -run 'TestPolicy' ./... | grep -E '^(--- |\s+\S+\.go:|ok|FAIL|PASS)')

step "k8s/ manifests are up to date with the chart"
bash scripts/k8s/render.sh --check

step "chart READMEs are what helm-docs generates from values.yaml"
bash scripts/k8s/docs.sh --check

step "production install + consistency with the rendered Deployments"
services=()
for dir in services/*/; do
  name=$(basename "$dir")
  if [ -f "$dir/dist/server.js" ]; then services+=("$name"); else echo "skip $name: not built (no dist/server.js)"; fi
done
[ ${#services[@]} -gt 0 ] || { echo "no built service: run pnpm build first" >&2; exit 1; }
PROD_ROOT="$WORK/prod"
for name in "${services[@]}"; do
  bash scripts/k8s/prod-install.sh "$name" "$PROD_ROOT/$name"
done
(cd scripts/k8s/verify && RENDERED_DIR="$RENDERED" PROD_ROOT="$PROD_ROOT" REPO_ROOT="$ROOT" \
  go test -count=1 -v -timeout 10m -run 'TestConsistency' ./...)

step "all Kubernetes checks passed"
