{{/* Helpers of the kvshuttle chart. */}}

{{/* Base name of every object: fullnameOverride, else the release name, with the chart
name appended unless the release name contains it; at most 63 characters. */}}
{{- define "kvshuttle.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the daemon's pods (never change them on upgrade). */}}
{{- define "kvshuttle.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "kvshuttle.labels" -}}
{{ include "kvshuttle.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: daemon
app.kubernetes.io/part-of: kvshuttle
{{- end -}}

{{/* The API socket path inside the pods (and on the host). */}}
{{- define "kvshuttle.socket" -}}
{{ .Values.socketDir | trimSuffix "/" }}/kvshuttle.sock
{{- end -}}

{{/* The exec probe: exit 0 only when the daemon answers SERVING on its socket. */}}
{{- define "kvshuttle.healthCommand" -}}
exec:
  command:
    - kvshuttle
    - --socket
    - {{ include "kvshuttle.socket" . }}
    - --timeout
    - "4"
    - health
{{- end -}}
