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

{{/* The image: by digest when one is given, else by tag (defaulting to
     the chart's appVersion). */}}
{{- define "sluice.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The service account's name. */}}
{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* sheets-sink's service account's name. */}}
{{- define "sluice.sheetsSinkServiceAccountName" -}}
{{- $a := .Values.services.sheetsSink.serviceAccount }}
{{- if $a.create }}
{{- default (printf "%s-sheets-sink" (include "sluice.fullname" .)) $a.name }}
{{- else }}
{{- default "default" $a.name }}
{{- end }}
{{- end }}

{{/* A secretKeyRef from a {name, key} reference. */}}
{{- define "sluice.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ required "a secret reference needs a name" .name }}
    key: {{ required "a secret reference needs a key" .key }}
{{- end }}

{{/* The secrets a service needs from the values, as a JSON list of {env,
     ref, file}: each is mounted as a file from its existing Secret and
     named by a *_FILE variable, so it never sits in the process
     environment (nor in `kubectl describe`, nor in a crash report). */}}
{{- define "sluice.secretFiles" -}}
{{- $v := .root.Values }}
{{- $files := list }}
{{- if $v.kafka.sasl.username }}
{{- $files = append $files (dict "env" "SLUICE_KAFKA_SASL_PASSWORD_FILE" "ref" $v.kafka.sasl.passwordSecret "file" "kafka-sasl-password") }}
{{- end }}
{{- if $v.kafka.ssl.keyPasswordSecret.name }}
{{- $files = append $files (dict "env" "SLUICE_KAFKA_SSL_KEY_PASSWORD_FILE" "ref" $v.kafka.ssl.keyPasswordSecret "file" "kafka-ssl-key-password") }}
{{- end }}
{{- if $v.kafka.ssl.keystorePasswordSecret.name }}
{{- $files = append $files (dict "env" "SLUICE_KAFKA_SSL_KEYSTORE_PASSWORD_FILE" "ref" $v.kafka.ssl.keystorePasswordSecret "file" "kafka-ssl-keystore-password") }}
{{- end }}
{{- if $v.kafka.oauthbearer.clientSecretSecret.name }}
{{- $files = append $files (dict "env" "SLUICE_KAFKA_OAUTHBEARER_CLIENT_SECRET_FILE" "ref" $v.kafka.oauthbearer.clientSecretSecret "file" "kafka-oauthbearer-client-secret") }}
{{- end }}
{{- if $v.schemaRegistry.user }}
{{- $files = append $files (dict "env" "SLUICE_SCHEMA_REGISTRY_PASSWORD_FILE" "ref" $v.schemaRegistry.passwordSecret "file" "schema-registry-password") }}
{{- end }}
{{- if .database }}
{{- $files = append $files (dict "env" "SLUICE_DATABASE_URL_FILE" "ref" $v.database.urlSecret "file" "database-url") }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* The projected volume holding the files of sluice.secretFiles, if any. */}}
{{- define "sluice.secretVolume" -}}
{{- $files := include "sluice.secretFiles" . | fromJsonArray }}
{{- if $files -}}
- name: sluice-secrets
  projected:
    sources:
      {{- range $files }}
      - secret:
          name: {{ required "a secret reference needs a name" .ref.name }}
          items:
            - key: {{ required "a secret reference needs a key" .ref.key }}
              path: {{ .file }}
      {{- end }}
{{- end }}
{{- end }}

{{/* The container's mount of sluice.secretVolume, if any. */}}
{{- define "sluice.secretMount" -}}
{{- if include "sluice.secretVolume" . -}}
- name: sluice-secrets
  mountPath: /var/run/secrets/sluice/common
  readOnly: true
{{- end }}
{{- end }}

{{/* The ConfigMap key of a contracts file: its path made a key (a key
     holds no "/") and a digest of the path, so two paths never meet and a
     file keeps its key whatever other files come and go (a pod of the
     previous revision still finds its keys during a rollout). */}}
{{- define "sluice.contractsKey" -}}
{{- printf "%s-%s" (regexReplaceAll "[^-._a-zA-Z0-9]" . "_" | trunc 200) (sha256sum . | trunc 8) -}}
{{- end }}

{{/* The ConfigMap of the contracts directory: the services', or (job) the
     provisioning hook's own copy, made before it (a hook runs before the
     release's other objects exist). */}}
{{- define "sluice.contractsConfigMap" -}}
{{- include "sluice.componentName" (dict "root" .root "component" (ternary "provision-contracts" "contracts" (default false .job))) }}
{{- end }}

{{/* The volume of the contracts directory (contracts.files), if any. */}}
{{- define "sluice.contractsVolume" -}}
{{- $files := .root.Values.contracts.files }}
{{- if $files -}}
{{- if not (hasKey $files "topics.toml") }}
{{- fail "contracts.files needs topics.toml: the topic map names every other file of the directory" }}
{{- end -}}
- name: contracts
  configMap:
    name: {{ include "sluice.contractsConfigMap" . }}
    items:
      {{- range $path := keys $files | sortAlpha }}
      - key: {{ include "sluice.contractsKey" $path }}
        path: {{ $path }}
      {{- end }}
{{- end }}
{{- end }}

{{/* The container's mount of sluice.contractsVolume, if any. */}}
{{- define "sluice.contractsMount" -}}
{{- if .root.Values.contracts.files -}}
- name: contracts
  mountPath: /etc/sluice/contracts
  readOnly: true
{{- end }}
{{- end }}

{{/* The connection settings every service shares: Kafka, the registry,
     Postgres when the component uses it, logs, traces, the health port
     (the last two not for a Job: `job` true, it serves and exports none). */}}
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
{{- end }}
- name: SLUICE_SCHEMA_REGISTRY_URL
  value: {{ required "schemaRegistry.url is required" $v.schemaRegistry.url | quote }}
{{- with $v.schemaRegistry.caFile }}
- name: SLUICE_SCHEMA_REGISTRY_CA_FILE
  value: {{ . | quote }}
{{- end }}
{{- if $v.schemaRegistry.user }}
- name: SLUICE_SCHEMA_REGISTRY_USER
  value: {{ $v.schemaRegistry.user | quote }}
{{- end }}
{{- range (include "sluice.secretFiles" . | fromJsonArray) }}
- name: {{ .env }}
  value: {{ printf "/var/run/secrets/sluice/common/%s" .file | quote }}
{{- end }}
{{- if $v.contracts.files }}
- name: SLUICE_CONTRACTS_DIR
  value: /etc/sluice/contracts
{{- end }}
- name: SLUICE_LOG_FORMAT
  value: {{ $v.observability.logFormat | quote }}
- name: SLUICE_LOG
  value: {{ $v.observability.logFilter | quote }}
{{- if not .job }}
{{- with $v.observability.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: SLUICE_HTTP_LISTEN
  value: {{ printf "0.0.0.0:%v" $v.observability.metricsPort | quote }}
{{- end }}
{{- end }}

{{/* The Kafka client settings of kafka.properties, as a dict. */}}
{{- define "sluice.kafkaProperties" -}}
{{- $properties := dict }}
{{- range .Values.kafka.properties }}
{{- $pair := splitn "=" 2 . }}
{{- $_ := set $properties $pair._0 $pair._1 }}
{{- end }}
{{- toYaml $properties }}
{{- end }}

{{/* KEDA's Kafka scaler connects as the services do: TLS when they use
     SSL or SASL_SSL, and their SASL mechanism. */}}
{{- define "sluice.kedaKafkaMetadata" -}}
{{- /* KEDA refuses tls or sasl set both here and in the TriggerAuthentication:
       your own (kafka.keda.authenticationRef) sets them. */}}
{{- if not .Values.kafka.keda.authenticationRef }}
{{- $properties := include "sluice.kafkaProperties" . | fromYaml }}
{{- $protocol := get $properties "security.protocol" | default "PLAINTEXT" | upper }}
{{- if has $protocol (list "SSL" "SASL_SSL") }}
tls: enable
{{- end }}
{{- if hasPrefix "SASL_" $protocol }}
{{- $mechanism := get $properties "sasl.mechanism" | default "" | upper }}
{{- /* OAUTHBEARER is not here: KEDA's needs the client id and the token URL
       in the TriggerAuthentication, which the chart has only as properties. */}}
{{- $modes := dict "SCRAM-SHA-512" "scram_sha512" "SCRAM-SHA-256" "scram_sha256" "PLAIN" "plaintext" }}
sasl: {{ required (printf "KEDA's Kafka scaler (services.*.keda) cannot be given sasl.mechanism=%q by the chart: set kafka.keda.authenticationRef to a TriggerAuthentication of yours that sets sasl, tls and the credentials" $mechanism) (get $modes $mechanism) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The TriggerAuthentication KEDA's Kafka scaler uses: the user's own
     (kafka.keda.authenticationRef), else the chart's when the services
     authenticate with SASL or check the brokers against a CA Secret. */}}
{{- define "sluice.kedaAuthenticationName" -}}
{{- $k := .Values.kafka.keda }}
{{- if $k.authenticationRef }}
{{- $k.authenticationRef }}
{{- else if or .Values.kafka.sasl.username $k.caSecret.name }}
{{- include "sluice.fullname" . }}-kafka
{{- end }}
{{- end }}

{{/* The egress NetworkPolicy of a component's pods (networkPolicy.egress):
     the cluster DNS, Kafka and the registry; Postgres when it has a
     database; the OTLP collector when one is set; its external API
     (.api: sheets or erp); Kafka's OAuth token endpoint under OAUTHBEARER. Call with the component's context; .hook makes
     it a pre-install hook, for a hook Job's pods. */}}
{{- define "sluice.egressPolicy" -}}
{{- $v := .root.Values }}
{{- $e := $v.networkPolicy.egress }}
{{- if and $v.networkPolicy.enabled $e.enabled }}
{{- $destinations := list "kafka" "schemaRegistry" }}
{{- if .database }}{{ $destinations = append $destinations "postgres" }}{{ end }}
{{- if $v.observability.otlpEndpoint }}{{ $destinations = append $destinations "otlp" }}{{ end }}
{{- with .api }}{{ $destinations = append $destinations . }}{{ end }}
{{- $properties := include "sluice.kafkaProperties" .root | fromYaml }}
{{- if eq (get $properties "sasl.mechanism" | default "" | upper) "OAUTHBEARER" }}{{ $destinations = append $destinations "kafkaOauth" }}{{ end }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "sluice.componentName" . }}-egress
  labels:
    {{- include "sluice.labels" .root | nindent 4 }}
  {{- if .hook }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-1"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
  {{- end }}
spec:
  podSelector:
    matchLabels:
      {{- include "sluice.selectorLabels" . | nindent 6 }}
  policyTypes: [Egress]
  egress:
    - {{- with $e.dns.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        {{- range $e.dns.ports }}
        - port: {{ . }}
          protocol: UDP
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    {{- range $destinations }}
    {{- $destination := get $e . }}
    # {{ . }}
    - {{- with $destination.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        {{- range $destination.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    {{- end }}
{{- end }}
{{- end }}
