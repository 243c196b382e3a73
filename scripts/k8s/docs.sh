#!/usr/bin/env bash
# Generates charts/*/README.md with helm-docs from each chart's Chart.yaml, the `# --` comments of its values.yaml
# (where every value is documented, once) and its README.md.gotmpl.
#   scripts/k8s/docs.sh           rewrite the READMEs
#   scripts/k8s/docs.sh --check   fail when a committed README differs from what helm-docs generates (CI)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/scripts/k8s/tools.sh" >/dev/null

generate() { # charts-dir
  "$HELM_DOCS" --chart-search-root "$1" --sort-values-order file --skip-version-footer --log-level warning
}

if [ "${1:-}" = "--check" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/task-manager-docs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  for chart in "$ROOT"/charts/*/; do
    name=$(basename "$chart")
    mkdir -p "$work/$name"
    cp "$chart/Chart.yaml" "$chart/values.yaml" "$chart/README.md.gotmpl" "$work/$name/"
  done
  generate "$work"
  drift=0
  for chart in "$ROOT"/charts/*/; do
    name=$(basename "$chart")
    if ! diff -u "$chart/README.md" "$work/$name/README.md" >"$work/$name.diff"; then
      head -40 "$work/$name.diff"
      echo "charts/$name/README.md is out of date: run scripts/k8s/docs.sh and commit it" >&2
      drift=1
    fi
  done
  [ "$drift" = 0 ] && echo "chart READMEs match their values.yaml (helm-docs $HELM_DOCS_VERSION)"
  exit "$drift"
else
  generate "$ROOT/charts"
  echo "wrote $(cd "$ROOT" && ls charts/*/README.md | tr '\n' ' ')"
fi
