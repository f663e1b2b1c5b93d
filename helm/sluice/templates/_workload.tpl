{{/*
A service's Deployment (or StatefulSet). Call with a dict:
  root       the chart's root context
  component  the component name (ingest, erp-sink, …)
  service    its section of .Values.services
  binary     the binary in the image
  args       its arguments (list)
  kind       Deployment or StatefulSet
  env        further container env (YAML list, rendered), optional
  volumes    pod volumes (YAML list, rendered), optional
  mounts     container volume mounts (YAML list, rendered), optional
  ports      further container ports (YAML list, rendered), optional
  checksum   a digest of the configuration the pod mounts (rolls the pods
             when it changes), optional; the contracts directory
             (contracts.files) has its own
  preStop    seconds a terminating pod keeps serving before SIGTERM, so
             that endpoints drop it first, optional
  api        the external API it calls (sheets, erp: its egress), optional
  serviceAccountName  its own service account, optional (else the shared one)
  serving    the pod serves clients (ingest): its dependencies gate its
             start (startupProbe on /readyz), but once started it stays
             ready until it stops (readinessProbe on /serving), so a blip
             of a server every replica shares does not empty the Service;
             the service answers 503 itself meanwhile. Optional
*/}}
{{- define "sluice.workload" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $name := include "sluice.componentName" . }}
apiVersion: apps/v1
kind: {{ .kind }}
metadata:
  name: {{ $name }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
    {{- include "sluice.selectorLabels" . | nindent 4 }}
spec:
  {{- if not (or (dig "autoscaling" "enabled" false .service) (dig "keda" "enabled" false .service)) }}
  replicas: {{ .service.replicas }}
  {{- end }}
  {{- if eq .kind "StatefulSet" }}
  serviceName: {{ printf "%s-pods" $name }}
  podManagementPolicy: Parallel
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "sluice.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "sluice.labels" $root | nindent 8 }}
        {{- include "sluice.selectorLabels" . | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $v.observability.metricsPort | quote }}
        prometheus.io/path: /metrics
        {{- with .checksum }}
        checksum/config: {{ . }}
        {{- end }}
        {{- with $v.contracts.files }}
        checksum/contracts: {{ toJson . | sha256sum }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with .service.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ .serviceAccountName | default (include "sluice.serviceAccountName" $root) }}
      automountServiceAccountToken: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      # Services finish or hand back what they hold on SIGTERM (20 s grace in
      # the loops), after the preStop wait if any.
      terminationGracePeriodSeconds: {{ add 30 (.preStop | default 0) }}
      containers:
        - name: {{ .component }}
          image: {{ include "sluice.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          command: [{{ printf "/usr/local/bin/%s" .binary | quote }}]
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            {{- include "sluice.commonEnv" . | nindent 12 }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- range $key, $value := .service.env }}
            - name: {{ $key }}
              value: {{ $value | quote }}
            {{- end }}
            {{- with .service.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with .service.envFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .preStop }}
          lifecycle:
            preStop:
              exec:
                command: ["/bin/sleep", {{ . | quote }}]
          {{- end }}
          ports:
            - name: metrics
              containerPort: {{ $v.observability.metricsPort }}
              protocol: TCP
            {{- with .ports }}
            {{- . | nindent 12 }}
            {{- end }}
          # Alive: the process answers and is not marked dead (a fatal Kafka error, a dead loop). Ready: Kafka, the registry (and Postgres) answer.
          livenessProbe:
            httpGet:
              path: /healthz
              port: metrics
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 6
          readinessProbe:
            httpGet:
              path: {{ ternary "/serving" "/readyz" (default false .serving) }}
              port: metrics
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 3
          startupProbe:
            httpGet:
              path: {{ ternary "/readyz" "/healthz" (default false .serving) }}
              port: metrics
            periodSeconds: 2
            timeoutSeconds: 5
            # A serving pod waits for its dependencies up to ten minutes
            # before the kubelet restarts it.
            failureThreshold: {{ ternary 300 60 (default false .serving) }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          resources:
            {{- toYaml (default $v.resources .service.resources) | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with include "sluice.secretMount" . }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with include "sluice.contractsMount" . }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with include "sluice.secretVolume" . }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with include "sluice.contractsVolume" . }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      affinity:
        {{- if $v.affinity }}
        {{- toYaml $v.affinity | nindent 8 }}
        {{- else }}
        # Replicas spread over nodes where they can.
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    {{- include "sluice.selectorLabels" . | nindent 20 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
    {{- include "sluice.selectorLabels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "sluice.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ $v.observability.metricsPort }}
      targetPort: metrics
      protocol: TCP
    {{- if .servicePort }}
    - name: http
      port: {{ .servicePort }}
      targetPort: http
      protocol: TCP
    {{- end }}
{{- if eq .kind "StatefulSet" }}
---
# The StatefulSet's governing Service: stable pod names in DNS.
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-pods" $name }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
    {{- include "sluice.selectorLabels" . | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "sluice.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: {{ $v.observability.metricsPort }}
      targetPort: metrics
      protocol: TCP
{{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
    {{- include "sluice.selectorLabels" . | nindent 4 }}
spec:
  {{- toYaml .service.podDisruptionBudget | nindent 2 }}
  selector:
    matchLabels:
      {{- include "sluice.selectorLabels" . | nindent 6 }}
{{- if dig "autoscaling" "enabled" false .service }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind }}
    name: {{ $name }}
  minReplicas: {{ .service.autoscaling.minReplicas }}
  maxReplicas: {{ .service.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .service.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- if dig "keda" "enabled" false .service }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind }}
    name: {{ $name }}
  minReplicaCount: {{ .service.keda.minReplicas }}
  maxReplicaCount: {{ .service.keda.maxReplicas }}
  triggers:
    - type: kafka
      metadata:
        bootstrapServers: {{ $v.kafka.bootstrap | quote }}
        consumerGroup: {{ .group | quote }}
        topic: {{ .topic | quote }}
        lagThreshold: {{ .service.keda.lagThreshold | quote }}
        {{- with include "sluice.kedaKafkaMetadata" $root | trim }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with include "sluice.kedaAuthenticationName" $root }}
      authenticationRef:
        name: {{ . }}
      {{- end }}
{{- end }}
{{- if $v.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $name }}
  {{- with $v.serviceMonitor.namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
    {{- with $v.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with $v.serviceMonitor.namespace }}
  namespaceSelector:
    matchNames: [{{ $root.Release.Namespace }}]
  {{- end }}
  selector:
    matchLabels:
      {{- include "sluice.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ $v.serviceMonitor.interval }}
      {{- with $v.serviceMonitor.scrapeTimeout }}
      scrapeTimeout: {{ . }}
      {{- end }}
      {{- if $v.serviceMonitor.honorLabels }}
      honorLabels: true
      {{- end }}
      {{- with $v.serviceMonitor.relabelings }}
      relabelings:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.serviceMonitor.metricRelabelings }}
      metricRelabelings:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
{{- if $v.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  labels:
    {{- include "sluice.labels" $root | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "sluice.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - from:
        {{- toYaml $v.networkPolicy.metricsFrom | nindent 8 }}
      ports:
        - port: metrics
          protocol: TCP
    {{- if .servicePort }}
    - from:
        - namespaceSelector: {}
      ports:
        - port: http
          protocol: TCP
    {{- end }}
{{- end }}
{{- include "sluice.egressPolicy" . }}
{{- end }}
