{{/* Names: the release's full name, truncated to Kubernetes' 63 characters. */}}
{{- define "chartagent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "chartagent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chartagent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chartagent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: chartagent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: pass (dict "root" $ "component" "api"). */}}
{{- define "chartagent.selectorLabels" -}}
app.kubernetes.io/name: chartagent
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "chartagent.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
{{- end -}}

{{- define "chartagent.smartKeyDir" -}}/var/run/secrets/chartagent/smart{{- end -}}

{{/* The environment every ChartAgent container shares: the ConfigMap, then the Secrets. */}}
{{- define "chartagent.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "chartagent.fullname" . }}
env:
  {{- with .Values.secrets.smartPrivateKey }}
  {{- if .existingSecret }}
  - name: CHARTAGENT_SMART_PRIVATE_KEY
    value: {{ printf "%s/%s" (include "chartagent.smartKeyDir" $) .key | quote }}
  {{- end }}
  {{- end }}
  {{- with .Values.secrets.serviceKeys }}
  {{- if .existingSecret }}
  - name: CHARTAGENT_SERVICE_KEYS
    valueFrom:
      secretKeyRef: {name: {{ .existingSecret | quote }}, key: {{ .key | quote }}}
  {{- end }}
  {{- end }}
  {{- with .Values.secrets.modelApiKey }}
  {{- if .existingSecret }}
  - name: CHARTAGENT_MODEL_API_KEY
    valueFrom:
      secretKeyRef: {name: {{ .existingSecret | quote }}, key: {{ .key | quote }}}
  {{- end }}
  {{- end }}
  {{- with .Values.secrets.database }}
  {{- if .existingSecret }}
  - name: CHARTAGENT_CHECKPOINT_URL
    valueFrom:
      secretKeyRef: {name: {{ .existingSecret | quote }}, key: {{ .key | quote }}}
  {{- end }}
  {{- end }}
  {{- with .Values.secrets.appSessionKey }}
  {{- if .existingSecret }}
  - name: CHARTAGENT_APP_SESSION_KEY
    valueFrom:
      secretKeyRef: {name: {{ .existingSecret | quote }}, key: {{ .key | quote }}}
  {{- end }}
  {{- end }}
  {{- range .Values.secrets.extraEnv }}
  - name: {{ .name }}
    valueFrom:
      secretKeyRef: {name: {{ .existingSecret | quote }}, key: {{ .key | quote }}}
  {{- end }}
  {{- with .Values.trustBundle }}
  {{- if .existingConfigMap }}
  - name: SSL_CERT_FILE
    value: {{ printf "/etc/chartagent/trust/%s" .key | quote }}
  {{- end }}
  {{- end }}
  - name: CHARTAGENT_STATE_DIR
    value: /var/lib/chartagent
  - name: MPLCONFIGDIR
    value: /tmp/matplotlib
  {{- with .Values.metrics }}
  {{- if .enabled }}
  {{- if eq (int .port) (int $.Values.api.port) }}
  {{- fail "metrics.port must differ from api.port: metrics are never served through the API's Service" }}
  {{- end }}
  # `chartagent serve` and the workers serve /metrics here (agent/metrics.py); the nightly job's
  # pod exits with its run and serves none.
  - name: CHARTAGENT_METRICS_PORT
    value: {{ .port | quote }}
  - name: CHARTAGENT_METRICS_ADDRESS
    value: "0.0.0.0"
  {{- end }}
  {{- end }}
{{- end -}}

{{/* The metrics port of a pod that serves /metrics, and the annotations that have it scraped. */}}
{{- define "chartagent.metricsPort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end }}
{{- end -}}

{{- define "chartagent.metricsAnnotations" -}}
{{- if .Values.metrics.enabled }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* Writable places under a read-only root filesystem, and the SMART key file. */}}
{{- define "chartagent.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: state
    mountPath: /var/lib/chartagent
  {{- if .Values.secrets.smartPrivateKey.existingSecret }}
  - name: smart-key
    mountPath: {{ include "chartagent.smartKeyDir" . }}
    readOnly: true
  {{- end }}
  {{- if .Values.trustBundle.existingConfigMap }}
  - name: trust-bundle
    mountPath: /etc/chartagent/trust
    readOnly: true
  {{- end }}
{{- end -}}

{{- define "chartagent.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 1Gi}
  - name: state
    emptyDir: {sizeLimit: 2Gi}
  {{- with .Values.secrets.smartPrivateKey }}
  {{- if .existingSecret }}
  - name: smart-key
    secret:
      secretName: {{ .existingSecret | quote }}
      defaultMode: 0400
      items:
        - key: {{ .key | quote }}
          path: {{ .key | quote }}
  {{- end }}
  {{- end }}
  {{- with .Values.trustBundle }}
  {{- if .existingConfigMap }}
  - name: trust-bundle
    configMap:
      name: {{ .existingConfigMap | quote }}
      items:
        - key: {{ .key | quote }}
          path: {{ .key | quote }}
  {{- end }}
  {{- end }}
{{- end -}}

{{/* Pod-level settings shared by the ChartAgent pods. */}}
{{- define "chartagent.podSpecCommon" -}}
serviceAccountName: {{ include "chartagent.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* Egress shared by the API, the workers and the nightly job: DNS, then each destination that
     names CIDRs or a selector (one with neither is left out: a rule without `to` opens the port
     to everything). */}}
{{- define "chartagent.egressRules" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- range $name, $dest := .Values.networkPolicy.egress }}
{{- if or $dest.cidrs $dest.namespaceSelector $dest.podSelector }}
# {{ $name }}
- to:
    {{- range $dest.cidrs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
    {{- if or $dest.namespaceSelector $dest.podSelector }}
    - {{- with $dest.namespaceSelector }}
      namespaceSelector:
        matchLabels:
          {{- toYaml . | nindent 10 }}
      {{- end }}
      {{- with $dest.podSelector }}
      podSelector:
        matchLabels:
          {{- toYaml . | nindent 10 }}
      {{- end }}
    {{- end }}
  ports:
    {{- range $dest.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
{{- end }}
{{- if .Values.vllm.enabled }}
# the chart's vLLM
- to:
    - podSelector:
        matchLabels:
          {{- include "chartagent.selectorLabels" (dict "root" . "component" "vllm") | nindent 10 }}
  ports:
    - {port: {{ .Values.vllm.port }}, protocol: TCP}
{{- end }}
{{- end }}

{{/*
How long a user's requests keep reaching one API replica: the SMART app session's lifetime in
seconds (CHARTAGENT_APP_SESSION_LIFETIME_S, 8 h unset, as agent/settings.py).
*/}}
{{- define "chartagent.sessionSeconds" -}}
{{- index .Values.config "CHARTAGENT_APP_SESSION_LIFETIME_S" | default "28800" | float64 | ceil | int -}}
{{- end }}

{{/* The NetworkPolicy rule that lets the cluster's Prometheus scrape the metrics port. */}}
{{- define "chartagent.metricsIngress" -}}
{{- if .Values.metrics.enabled }}
- from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.metrics.scraperNamespace | quote }}
  ports:
    - {port: {{ .Values.metrics.port }}, protocol: TCP}
{{- end }}
{{- end -}}
