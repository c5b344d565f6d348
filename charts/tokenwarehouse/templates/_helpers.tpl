{{/*
Naming, labels and image helpers shared by every template of the chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "tokenwarehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else <release>-<chart> (or the release name
alone when it already contains the chart name). Truncated to 52 characters so that suffixes
such as "-leader-election" keep names within 63.
*/}}
{{- define "tokenwarehouse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
<fullname>-<suffix>, with the full name shortened so that the result fits in 63 characters.
Call as (include "tokenwarehouse.suffixedName" (list . "operator")).
*/}}
{{- define "tokenwarehouse.suffixedName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $base := include "tokenwarehouse.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base $suffix }}
{{- end }}

{{/* The operator's Deployment, ServiceAccount and RBAC objects. */}}
{{- define "tokenwarehouse.operatorName" -}}
{{- include "tokenwarehouse.suffixedName" (list . "operator") }}
{{- end }}

{{/* The leader-election Lease (one per release, in the release namespace). */}}
{{- define "tokenwarehouse.leaseName" -}}
{{- include "tokenwarehouse.suffixedName" (list . "operator-leader") }}
{{- end }}

{{/* chart label: name-version, as Helm's own charts write it. */}}
{{- define "tokenwarehouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "tokenwarehouse.labels" -}}
helm.sh/chart: {{ include "tokenwarehouse.chart" . }}
{{ include "tokenwarehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tokenwarehouse
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's pods (stable across upgrades: never add to them). */}}
{{- define "tokenwarehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenwarehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "tokenwarehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tokenwarehouse.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace the operator watches: "" (all) in cluster mode. */}}
{{- define "tokenwarehouse.watchNamespace" -}}
{{- if eq .Values.scope.mode "namespace" }}
{{- default .Release.Namespace .Values.scope.namespace }}
{{- end }}
{{- end }}

{{/* Where the example TokenWarehouse goes: the watched namespace, else the release's. */}}
{{- define "tokenwarehouse.exampleNamespace" -}}
{{- default .Release.Namespace (include "tokenwarehouse.watchNamespace" .) }}
{{- end }}

{{/* repository:tag or repository@digest; the tag defaults to the chart's appVersion. */}}
{{- define "tokenwarehouse.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* The pod webhook's Service and MutatingWebhookConfiguration. */}}
{{- define "tokenwarehouse.webhookName" -}}
{{- include "tokenwarehouse.suffixedName" (list . "pod-webhook") }}
{{- end }}

{{/* The Secret with the pod webhook's serving certificate (tw-operator's or cert-manager's). */}}
{{- define "tokenwarehouse.webhookSecretName" -}}
{{- include "tokenwarehouse.suffixedName" (list . "pod-webhook-cert") }}
{{- end }}

{{/* true when the pod webhook is on; fails for a namespace-scoped install. */}}
{{- define "tokenwarehouse.webhookEnabled" -}}
{{- if .Values.webhook.enabled }}
{{- if ne .Values.scope.mode "cluster" }}
{{- fail "webhook.enabled needs scope.mode cluster: a MutatingWebhookConfiguration is cluster-scoped (set webhook.enabled=false for a namespace-scoped install)" }}
{{- end }}
{{- if and .Values.webhook.certManager.enabled (not (.Capabilities.APIVersions.Has "cert-manager.io/v1")) }}
{{- fail "webhook.certManager.enabled needs cert-manager (the cert-manager.io/v1 API) in the cluster" }}
{{- end }}
{{- "true" }}
{{- end }}
{{- end }}
