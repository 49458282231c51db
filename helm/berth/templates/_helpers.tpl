{{/* The release's name for berth's objects: "<release>-berth", or "<release>" when it says berth. */}}
{{- define "berth.fullname" -}}
{{- if contains "berth" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-berth" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "berth.labels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "berth.selector" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The Secret holding jwt-secret and mongodb-uri. */}}
{{- define "berth.secretName" -}}
{{- .Values.existingSecret | default (include "berth.fullname" .) -}}
{{- end -}}

{{/* Where the placed services run. */}}
{{- define "berth.liveNamespace" -}}
{{- .Values.live.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "berth.mongodbName" -}}
{{- printf "%s-mongodb" (include "berth.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The MongoDB URI the chart's Secret carries: the external one, else the internal server's. */}}
{{- define "berth.mongodbUri" -}}
{{- if .Values.mongodb.uri -}}
{{- .Values.mongodb.uri -}}
{{- else if .Values.mongodb.internal.enabled -}}
{{- printf "mongodb://%s.%s.svc:27017" (include "berth.mongodbName" .) .Release.Namespace -}}
{{- else -}}
{{- fail "mongodb.uri: give an external MongoDB URI, or set mongodb.internal.enabled=true, or existingSecret with a `mongodb-uri` key" -}}
{{- end -}}
{{- end -}}

{{/* What the schema cannot say: values that are needed together. */}}
{{- define "berth.validate" -}}
{{- if not .Values.existingSecret -}}
{{- if not .Values.auth.jwtSecret -}}
{{- fail "auth.jwtSecret: needed (at least 32 bytes, e.g. `openssl rand -hex 32`) unless existingSecret names a Secret with a `jwt-secret` key" -}}
{{- end -}}
{{- $_ := include "berth.mongodbUri" . -}}
{{- if .Values.auth.usersKey -}}
{{- fail "auth.usersKey: only with existingSecret; give the users file in auth.users instead" -}}
{{- end -}}
{{- else if .Values.auth.users -}}
{{- fail "auth.users: with existingSecret, put the users file in that Secret and name its key in auth.usersKey" -}}
{{- end -}}
{{- if and .Values.mongodb.uri .Values.mongodb.internal.enabled -}}
{{- fail "mongodb.uri: set together with mongodb.internal.enabled; choose one" -}}
{{- end -}}
{{- end -}}
