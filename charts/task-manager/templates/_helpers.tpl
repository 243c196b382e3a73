{{- define "tm.labels" -}}
app.kubernetes.io/name: task-manager
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: task-manager
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The gateway's Service name: the same rule as the microservice chart's fullname. */}}
{{- define "tm.gatewayService" -}}
{{- if eq .Release.Name "gateway" -}}gateway{{- else -}}{{ printf "%s-gateway" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "tm.gatewayName" -}}
{{- printf "%s-gateway-api" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
