{{/*
Expand the name of the chart.
*/}}
{{- define "expressway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name (63 characters: the DNS label limit).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "expressway.fullname" -}}
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

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "expressway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "expressway.labels" -}}
helm.sh/chart: {{ include "expressway.chart" . }}
app.kubernetes.io/name: {{ include "expressway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: expressway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels of a component ("executor" or "gateway"): pass (dict "ctx" $ "component" "executor").
*/}}
{{- define "expressway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "expressway.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Common annotations (rendered under metadata.annotations when non-empty).
*/}}
{{- define "expressway.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount to use.
*/}}
{{- define "expressway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "expressway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image reference (digest wins over tag; tag defaults to appVersion).
*/}}
{{- define "expressway.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Name of the definitions ConfigMap ("" when there are no definitions).
*/}}
{{- define "expressway.definitionsConfigMap" -}}
{{- if .Values.definitionsExistingConfigMap }}
{{- .Values.definitionsExistingConfigMap }}
{{- else if or .Values.definitions .Values.definitionFiles }}
{{- printf "%s-definitions" (include "expressway.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Name of the tasks-config ConfigMap ("" when there is none).
*/}}
{{- define "expressway.tasksConfigMap" -}}
{{- if .Values.executor.tasksConfigExistingConfigMap }}
{{- .Values.executor.tasksConfigExistingConfigMap }}
{{- else if .Values.executor.tasksConfig }}
{{- printf "%s-tasks" (include "expressway.fullname" .) }}
{{- end }}
{{- end }}

{{/*
librdkafka security.protocol from the TLS and SASL switches.
*/}}
{{- define "expressway.kafka.securityProtocol" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.sasl.enabled }}SASL_SSL
{{- else if .Values.kafka.tls.enabled }}SSL
{{- else if .Values.kafka.sasl.enabled }}SASL_PLAINTEXT
{{- else }}PLAINTEXT
{{- end }}
{{- end }}

{{/*
`--kafka KEY=VALUE` arguments (a YAML list fragment): security settings, then kafka.config.
The SASL password is expanded by the kubelet from $(KAFKA_SASL_PASSWORD).
*/}}
{{- define "expressway.kafka.args" -}}
{{- $v := .Values.kafka }}
{{- if or $v.tls.enabled $v.sasl.enabled }}
- --kafka=security.protocol={{ include "expressway.kafka.securityProtocol" . }}
{{- end }}
{{- if $v.tls.enabled }}
{{- if $v.tls.caKey }}
- --kafka=ssl.ca.location=/etc/expressway/kafka-tls/{{ $v.tls.caKey }}
{{- end }}
{{- if and $v.tls.certKey $v.tls.keyKey }}
- --kafka=ssl.certificate.location=/etc/expressway/kafka-tls/{{ $v.tls.certKey }}
- --kafka=ssl.key.location=/etc/expressway/kafka-tls/{{ $v.tls.keyKey }}
{{- end }}
{{- if not $v.tls.verifyHostname }}
- --kafka=ssl.endpoint.identification.algorithm=none
{{- end }}
{{- end }}
{{- if $v.sasl.enabled }}
- --kafka=sasl.mechanism={{ $v.sasl.mechanism }}
- --kafka=sasl.username=$(KAFKA_SASL_USERNAME)
- --kafka=sasl.password=$(KAFKA_SASL_PASSWORD)
{{- end }}
{{- range $key, $value := $v.config }}
- {{ printf "--kafka=%s=%v" $key $value | quote }}
{{- end }}
{{- end }}

{{/*
Environment variables carrying the SASL credentials from the Secret.
*/}}
{{- define "expressway.kafka.env" -}}
{{- if .Values.kafka.sasl.enabled }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end }}

{{/*
Volume and mount for the Kafka TLS Secret.
*/}}
{{- define "expressway.kafka.tlsVolume" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- define "expressway.kafka.tlsVolumeMount" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/expressway/kafka-tls
  readOnly: true
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: longer than the drain budget.
*/}}
{{- define "expressway.terminationGracePeriodSeconds" -}}
{{- $drain := int .Values.executor.drainTimeoutSeconds }}
{{- $grace := add $drain 15 }}
{{- if not (kindIs "invalid" .Values.executor.terminationGracePeriodSeconds) }}
{{- $grace = int .Values.executor.terminationGracePeriodSeconds }}
{{- end }}
{{- if le $grace $drain }}
{{- fail (printf "executor.terminationGracePeriodSeconds (%d) must be longer than executor.drainTimeoutSeconds (%d): pods are killed before in-flight executions drain" $grace $drain) }}
{{- end }}
{{- $grace }}
{{- end }}

{{/*
Value checks the schema cannot express.
*/}}
{{- define "expressway.validate" -}}
{{- if and .Values.autoscaling.hpa.enabled .Values.autoscaling.keda.enabled }}
{{- fail "autoscaling.hpa.enabled and autoscaling.keda.enabled are exclusive: KEDA creates its own HPA" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are exclusive: pods would be scraped twice" }}
{{- end }}
{{- if and .Values.kafka.tls.enabled (not .Values.kafka.tls.existingSecret) }}
{{- fail "kafka.tls.enabled needs kafka.tls.existingSecret" }}
{{- end }}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.sasl.existingSecret) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret" }}
{{- end }}
{{- if and .Values.gateway.enabled (not .Values.gateway.auth.disabled) (not .Values.gateway.auth.existingSecret) }}
{{- fail "gateway.enabled needs gateway.auth.existingSecret (a Secret of ACCESS_KEY_ID:SECRET_ACCESS_KEY lines) or gateway.auth.disabled=true (development only): the gateway refuses to start without SigV4 credentials" }}
{{- end }}
{{- end }}
