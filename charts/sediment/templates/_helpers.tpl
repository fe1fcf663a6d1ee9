{{/* Names, labels and the derived values the templates share. */}}

{{- define "sediment.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; the etcd and headless names add suffixes, so keep room. */}}
{{- define "sediment.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sediment.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sediment.labels" -}}
helm.sh/chart: {{ include "sediment.chart" . }}
app.kubernetes.io/name: {{ include "sediment.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the brokers. */}}
{{- define "sediment.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sediment.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{/* Selector labels of the built-in etcd. */}}
{{- define "sediment.etcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sediment.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end }}

{{- define "sediment.headless" -}}
{{- printf "%s-headless" (include "sediment.fullname" .) }}
{{- end }}

{{- define "sediment.etcd.fullname" -}}
{{- printf "%s-etcd" (include "sediment.fullname" .) }}
{{- end }}

{{- define "sediment.etcd.headless" -}}
{{- printf "%s-etcd-headless" (include "sediment.fullname" .) }}
{{- end }}

{{- define "sediment.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sediment.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given. Call with (dict "image" X "default" TAG). */}}
{{- define "sediment.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .default .image.tag) }}
{{- end }}
{{- end }}

{{/*
The etcd client URLs the brokers use: the external ones, or every member of the built-in
etcd by its per-pod DNS name. Fails when neither or both are configured.
*/}}
{{- define "sediment.etcdEndpoints" -}}
{{- if and .Values.etcd.enabled .Values.externalEtcd.endpoints }}
{{- fail "set either etcd.enabled (the built-in etcd) or externalEtcd.endpoints, not both" }}
{{- end }}
{{- if .Values.externalEtcd.endpoints }}
{{- join "," .Values.externalEtcd.endpoints }}
{{- else if .Values.etcd.enabled }}
{{- $urls := list }}
{{- $etcd := include "sediment.etcd.fullname" . }}
{{- $svc := include "sediment.etcd.headless" . }}
{{- range $i := until (int .Values.etcd.replicaCount) }}
{{- $urls = append $urls (printf "http://%s-%d.%s.%s.svc.%s:2379" $etcd $i $svc $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- join "," $urls }}
{{- else }}
{{- fail "the brokers need etcd: set etcd.enabled=true or externalEtcd.endpoints" }}
{{- end }}
{{- end }}

{{/* The object store URL: s3://bucket/prefix. */}}
{{- define "sediment.objectStore" -}}
{{- $bucket := required "objectStore.bucket is required" .Values.objectStore.bucket }}
{{- $prefix := trimAll "/" .Values.objectStore.prefix }}
{{- if $prefix }}
{{- printf "s3://%s/%s" $bucket $prefix }}
{{- else }}
{{- printf "s3://%s" $bucket }}
{{- end }}
{{- end }}
