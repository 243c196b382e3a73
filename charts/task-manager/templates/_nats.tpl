{{/* NATS of this release (global.nats.enabled): names and labels. */}}
{{- define "tm.nats.name" -}}
{{- printf "%s-nats" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tm.nats.headless" -}}
{{- printf "%s-nats-headless" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tm.nats.selectorLabels" -}}
app.kubernetes.io/name: nats
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tm.nats.labels" -}}
{{ include "tm.nats.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.nats.image.tag | quote }}
app.kubernetes.io/component: event-broker
app.kubernetes.io/part-of: task-manager
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "tm.nats.serviceMonitorEnabled" -}}
{{- if and .Values.nats.exporter.enabled .Values.nats.exporter.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") -}}true{{- end -}}
{{- end -}}

{{- define "tm.nats.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
