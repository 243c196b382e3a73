{{/*
The service's name, e.g. task-service: `name`, else the alias the umbrella chart gives this chart (Helm names an
aliased dependency after its alias). A standalone install of the chart itself has to set it.
*/}}
{{- define "ms.name" -}}
{{- $name := .Values.name | default (ternary "" .Chart.Name (eq .Chart.Name "microservice")) -}}
{{- required "name is required (task-service, user-service, project-service or gateway)" $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Kubernetes name of a service of this system in this release: the release name alone when it already is the
service's name (a standalone `helm install task-service`), otherwise <release>-<service>. Args: (list $ "svc").
*/}}
{{- define "ms.fullnameOf" -}}
{{- $root := index . 0 -}}
{{- $svc := index . 1 -}}
{{- if eq $root.Release.Name $svc -}}
{{- $svc | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" $root.Release.Name $svc | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ms.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "ms.fullnameOf" (list . (include "ms.name" .)) -}}
{{- end -}}
{{- end -}}

{{- define "ms.dbName" -}}
{{- printf "%s-postgresql" (include "ms.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ms.dbHeadlessName" -}}
{{- printf "%s-headless" (include "ms.dbName" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ms.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: only name and instance, because selectors can never change. */}}
{{- define "ms.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ms.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ms.labels" -}}
{{ include "ms.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.component }}
app.kubernetes.io/part-of: {{ .Values.partOf }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "ms.chart" . }}
{{- end -}}

{{- define "ms.dbSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ms.name" . }}-postgresql
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ms.dbLabels" -}}
{{ include "ms.dbSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.postgresql.image.tag | quote }}
app.kubernetes.io/component: database
app.kubernetes.io/part-of: {{ .Values.partOf }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "ms.chart" . }}
{{- end -}}

{{- define "ms.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
In-cluster base URL of another service of this system. Args: (list $ "target"), target being a full
http(s) URL (used as is), `name` (its ClusterIP Service on port 80) or, with discovery=dns, `name:port`
(its headless Service, so the caller resolves and balances across the pods itself).
*/}}
{{- define "ms.serviceUrl" -}}
{{- $root := index . 0 -}}
{{- $target := index . 1 -}}
{{- if regexMatch "^https?://" $target -}}
{{- $target -}}
{{- else -}}
{{- $parts := splitList ":" $target -}}
{{- $name := include "ms.fullnameOf" (list $root (first $parts)) -}}
{{- if and (eq $root.Values.discovery "dns") (eq (len $parts) 2) -}}
{{- printf "http://%s.%s.svc.%s:%s" (printf "%s-headless" $name | trunc 63 | trimSuffix "-") $root.Release.Namespace $root.Values.clusterDomain (last $parts) -}}
{{- else -}}
{{- printf "http://%s.%s.svc.%s" $name $root.Release.Namespace $root.Values.clusterDomain -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Which way this service gets its database: none, embedded (its own StatefulSet) or external. */}}
{{- define "ms.dbMode" -}}
{{- if not .Values.database.enabled -}}none{{- else if .Values.database.external.enabled -}}external{{- else -}}embedded{{- end -}}
{{- end -}}

{{- define "ms.dbSecretName" -}}
{{- if .Values.database.external.enabled -}}
{{- required "database.external.existingSecret is required for an external database" .Values.database.external.existingSecret -}}
{{- else -}}
{{- .Values.postgresql.auth.existingSecret | default (printf "%s-db" (include "ms.fullname" .)) -}}
{{- end -}}
{{- end -}}

{{/* Seconds the pod may take to stop: preStop pause + the kit's drain limit + a margin for the exit. */}}
{{- define "ms.terminationGrace" -}}
{{- add .Values.shutdown.preStopSeconds (div (add .Values.shutdown.graceMs 999) 1000) 5 -}}
{{- end -}}

{{- define "ms.serviceMonitorEnabled" -}}
{{- if and .Values.metrics.enabled .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") -}}true{{- end -}}
{{- end -}}

{{- define "ms.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* DATABASE_URL for the service and its migrator. Args: (list $ dbMode dbName). */}}
{{- define "ms.databaseEnv" -}}
{{- $root := index . 0 -}}
{{- $mode := index . 1 -}}
{{- $dbName := index . 2 -}}
{{- if eq $mode "external" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "ms.dbSecretName" $root }}
      key: {{ $root.Values.database.external.urlKey }}
{{- else -}}
{{- /* The password stays out of the URL (no encoding to get wrong): pg reads PGPASSWORD, as libpq does. */}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ms.dbSecretName" $root }}
      key: password
- name: DATABASE_URL
  value: {{ printf "postgres://%s@%s.%s.svc.%s:5432/%s" $dbName (include "ms.dbName" $root) $root.Release.Namespace $root.Values.clusterDomain $dbName | quote }}
{{- end -}}
{{- end -}}

{{- define "ms.signingKeysSecret" -}}
{{- printf "%s-signing-keys" (include "ms.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
A new private Ed25519 JWK (RFC 8037: kty OKP, crv Ed25519, d, x) as JSON, made with Helm's own functions:
the private key is PKCS#8 (its last 32 bytes are the seed `d`); the public key `x` is read from a throwaway
self-signed certificate of that key, where it follows the fixed Ed25519 SubjectPublicKeyInfo prefix
30 2a 30 05 06 03 2b 65 70 03 21 00. Both are base64url without padding.
*/}}
{{- define "ms.newSigningJwk" -}}
{{- $key := genPrivateKey "ed25519" -}}
{{- $cert := genSelfSignedCertWithKey "task-manager-token-signing" (list) (list) 1 $key -}}
{{- $pkcs8 := $key | replace "-----BEGIN PRIVATE KEY-----" "" | replace "-----END PRIVATE KEY-----" "" | nospace | b64dec -}}
{{- $der := $cert.Cert | replace "-----BEGIN CERTIFICATE-----" "" | replace "-----END CERTIFICATE-----" "" | nospace | b64dec -}}
{{- $spki := splitList "\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00" $der -}}
{{- if or (ne (len $pkcs8) 48) (ne (len $spki) 2) -}}{{- fail "signing key: unexpected PKCS#8 or certificate layout for Ed25519" -}}{{- end -}}
{{- $d := substr 16 48 $pkcs8 | b64enc | replace "+" "-" | replace "/" "_" | trimAll "=" -}}
{{- $x := substr 0 32 (index $spki 1) | b64enc | replace "+" "-" | replace "/" "_" | trimAll "=" -}}
{{- dict "kty" "OKP" "crv" "Ed25519" "d" $d "x" $x "kid" (printf "helm-%s-%s" (now | date "20060102") (randAlphaNum 6 | lower)) "alg" "EdDSA" "use" "sig" | toJson -}}
{{- end -}}

{{/* The service's entry of nodeRuntime (values.yaml), else its `default`. */}}
{{- define "ms.nodeRuntime" -}}
{{- index .Values.nodeRuntime (include "ms.name" .) | default .Values.nodeRuntime.default | toJson -}}
{{- end -}}

{{/* NODE_OPTIONS: `nodeOptions` when set, else the service's nodeRuntime options. */}}
{{- define "ms.nodeOptions" -}}
{{- if kindIs "invalid" .Values.nodeOptions -}}
{{- (include "ms.nodeRuntime" . | fromJson).options -}}
{{- else -}}
{{- .Values.nodeOptions -}}
{{- end -}}
{{- end -}}

{{/* The container's command line: the kit's tracing entry, the V8 flags (`nodeFlags` when set, else nodeRuntime's), the server. */}}
{{- define "ms.command" -}}
{{- $flags := .Values.nodeFlags -}}
{{- if kindIs "invalid" $flags -}}
{{- $flags = (include "ms.nodeRuntime" . | fromJson).flags | default list -}}
{{- end -}}
{{- concat (list "node" "--import" "@task-manager/service-kit/instrument") $flags (list "dist/server.js") | toJson -}}
{{- end -}}
