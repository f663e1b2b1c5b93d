{{/* The chart's name, shortened to what Kubernetes names allow. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: release-chart, unless the release name holds the chart's. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component; call with (dict "root" $ "component" name). */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A component's object name: <fullname>-<component>. */}}
{{- define "sluice.componentName" -}}
{{- printf "%s-%s" (include "sluice.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image, tag defaulting to the chart's appVersion. */}}
{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The service account's name. */}}
{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* A secretKeyRef from a {name, key} reference. */}}
{{- define "sluice.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ required "a secret reference needs a name" .name }}
    key: {{ required "a secret reference needs a key" .key }}
{{- end }}

{{/* The connection settings every service shares: Kafka, the registry,
     Postgres when the component uses it, logs, traces, the health port. */}}
{{- define "sluice.commonEnv" -}}
{{- $v := .root.Values }}
- name: SLUICE_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required" $v.kafka.bootstrap | quote }}
{{- with $v.kafka.properties }}
- name: SLUICE_KAFKA_PROPERTIES
  value: {{ join "," . | quote }}
{{- end }}
{{- if $v.kafka.sasl.username }}
- name: SLUICE_KAFKA_SASL_USERNAME
  value: {{ $v.kafka.sasl.username | quote }}
- name: SLUICE_KAFKA_SASL_PASSWORD
  {{- include "sluice.secretRef" $v.kafka.sasl.passwordSecret | nindent 2 }}
{{- end }}
- name: SLUICE_SCHEMA_REGISTRY_URL
  value: {{ required "schemaRegistry.url is required" $v.schemaRegistry.url | quote }}
{{- if $v.schemaRegistry.user }}
- name: SLUICE_SCHEMA_REGISTRY_USER
  value: {{ $v.schemaRegistry.user | quote }}
- name: SLUICE_SCHEMA_REGISTRY_PASSWORD
  {{- include "sluice.secretRef" $v.schemaRegistry.passwordSecret | nindent 2 }}
{{- end }}
{{- if .database }}
- name: SLUICE_DATABASE_URL
  {{- include "sluice.secretRef" $v.database.urlSecret | nindent 2 }}
{{- end }}
- name: SLUICE_LOG_FORMAT
  value: {{ $v.observability.logFormat | quote }}
- name: SLUICE_LOG
  value: {{ $v.observability.logFilter | quote }}
{{- with $v.observability.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: SLUICE_HTTP_LISTEN
  value: {{ printf "0.0.0.0:%v" $v.observability.metricsPort | quote }}
{{- end }}
