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

{{/*
The enabled Kafka listeners, as JSON {"listeners": [{name, port, portName, tls, sasl}]}:
PLAINTEXT (kafka.port, the broker's --kafka-addr) first, then SSL, SASL_SSL, SASL_PLAINTEXT
(the broker's --listener). Read it with (include "sediment.kafkaListeners" . | fromJson).
*/}}
{{- define "sediment.kafkaListeners" -}}
{{- $l := .Values.listeners }}
{{- $all := list }}
{{- if $l.plaintext.enabled }}
{{- $all = append $all (dict "name" "PLAINTEXT" "port" (int .Values.kafka.port) "portName" "kafka" "tls" false "sasl" false) }}
{{- end }}
{{- if and $l.ssl $l.ssl.enabled }}
{{- $all = append $all (dict "name" "SSL" "port" (int $l.ssl.port) "portName" "kafka-ssl" "tls" true "sasl" false) }}
{{- end }}
{{- if and $l.saslSsl $l.saslSsl.enabled }}
{{- $all = append $all (dict "name" "SASL_SSL" "port" (int $l.saslSsl.port) "portName" "kafka-sasl-ssl" "tls" true "sasl" true) }}
{{- end }}
{{- if and $l.saslPlaintext $l.saslPlaintext.enabled }}
{{- $all = append $all (dict "name" "SASL_PLAINTEXT" "port" (int $l.saslPlaintext.port) "portName" "kafka-sasl" "tls" false "sasl" true) }}
{{- end }}
{{- toJson (dict "listeners" $all) }}
{{- end }}

{{/* "true" when an SSL or SASL_SSL listener is enabled (TLS settings apply), else "". */}}
{{- define "sediment.tlsListener" -}}
{{- range (include "sediment.kafkaListeners" . | fromJson).listeners }}{{ if .tls }}true{{ end }}{{ end }}
{{- end }}

{{/* "true" when a SASL_SSL or SASL_PLAINTEXT listener is enabled (SASL settings apply), else "". */}}
{{- define "sediment.saslListener" -}}
{{- range (include "sediment.kafkaListeners" . | fromJson).listeners }}{{ if .sasl }}true{{ end }}{{ end }}
{{- end }}

{{/*
Refuses listener, TLS and SASL values the brokers would refuse at start-up (or that would
leave them unreachable), with the value to change.
*/}}
{{- define "sediment.validateListeners" -}}
{{- $listeners := (include "sediment.kafkaListeners" . | fromJson).listeners }}
{{- if not $listeners }}
{{- fail "no Kafka listener: enable at least one of listeners.plaintext, listeners.ssl, listeners.saslSsl, listeners.saslPlaintext" }}
{{- end }}
{{- $ports := dict (toString (int .Values.http.port)) "http.port" }}
{{- if and (not .Values.listeners.plaintext.enabled) .Values.listeners.plaintext.podLocal }}
{{- $_ := set $ports (toString (int .Values.kafka.port)) "kafka.port (listeners.plaintext.podLocal)" }}
{{- end }}
{{- range $listeners }}
{{- $key := toString (int .port) }}
{{- if hasKey $ports $key }}
{{- fail (printf "listener %s: port %s is also %s; give each listener a port of its own" .name $key (get $ports $key)) }}
{{- end }}
{{- $_ := set $ports $key (printf "the %s listener's" .name) }}
{{- end }}
{{- if include "sediment.tlsListener" . }}
{{- if not .Values.tls.secretName }}
{{- fail "listeners.ssl and listeners.saslSsl need tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key (and ca.crt for tls.caFromSecret), as a cert-manager Certificate writes" }}
{{- end }}
{{- if and (ne (default "none" .Values.tls.clientAuth) "none") (not .Values.tls.caFromSecret) }}
{{- fail (printf "tls.clientAuth %s needs tls.caFromSecret=true: client certificates are checked against the Secret's ca.crt" .Values.tls.clientAuth) }}
{{- end }}
{{- end }}
{{- $ib := .Values.interBrokerListener }}
{{- if not (has $ib (list "PLAINTEXT" "SSL")) }}
{{- fail (printf "interBrokerListener %s: brokers replicate through PLAINTEXT or SSL (they cannot log in to each other with SASL yet)" $ib) }}
{{- end }}
{{- $found := false }}
{{- range $listeners }}{{ if eq .name $ib }}{{ $found = true }}{{ end }}{{ end }}
{{- if not $found }}
{{- fail (printf "interBrokerListener %s: that listener is not enabled (listeners.%s.enabled)" $ib (ternary "plaintext" "ssl" (eq $ib "PLAINTEXT"))) }}
{{- end }}
{{- if and (eq $ib "SSL") (not .Values.tls.caFromSecret) }}
{{- fail "interBrokerListener SSL needs tls.caFromSecret=true: the brokers check each other's certificates against the Secret's ca.crt" }}
{{- end }}
{{- if and (include "sediment.saslListener" .) .Values.sasl.plainUsersSecret .Values.sasl.mechanisms (not (has "PLAIN" .Values.sasl.mechanisms)) }}
{{- fail "sasl.plainUsersSecret is checked by PLAIN only: add PLAIN to sasl.mechanisms (or leave them empty for all three)" }}
{{- end }}
{{- end }}
