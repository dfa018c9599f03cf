{{/*
Base name of every resource. Truncated to 40 characters so "<fullname>-provisioner" and
"<fullname>-postgresql" stay within the 52-character StatefulSet/Service name limits.
*/}}
{{- define "platform.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels carried by every resource. */}}
{{- define "platform.labels" -}}
helm.sh/chart: {{ include "platform.chart" . }}
app.kubernetes.io/name: woostore
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: woostore
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "api"). */}}
{{- define "platform.selectorLabels" -}}
app.kubernetes.io/name: woostore
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full label set of one component; call like platform.selectorLabels. */}}
{{- define "platform.componentLabels" -}}
{{ include "platform.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Labels that never change between chart versions, for StatefulSet volumeClaimTemplates
(immutable). Call like platform.selectorLabels.
*/}}
{{- define "platform.stableLabels" -}}
{{ include "platform.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: woostore
{{- end -}}

{{/* "repository:tag", or "repository:tag@digest" when a digest pins the image. */}}
{{- define "platform.image" -}}
{{- if .digest -}}
{{- printf "%s:%s@%s" .repository .tag .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/*
The image of one service: one repository, the tag "<service>-<tag>" (the services
Dockerfile's target). Call with (dict "ctx" $ "service" "api").
*/}}
{{- define "platform.serviceImage" -}}
{{- $image := .ctx.Values.image -}}
{{- $tag := printf "%s-%s" .service ($image.tag | default .ctx.Chart.AppVersion) -}}
{{- include "platform.image" (dict "repository" $image.repository "tag" $tag "digest" (get $image.digests .service)) -}}
{{- end -}}

{{- define "platform.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "platform.fullname" .)) -}}
{{- end -}}

{{- define "platform.serviceAccountName" -}}
{{- printf "%s-%s" (include "platform.fullname" .ctx) .component -}}
{{- end -}}

{{- define "platform.scheme" -}}
{{- ternary "https" "http" .Values.ingress.tls.enabled -}}
{{- end -}}

{{- define "platform.tlsSecretName" -}}
{{- .Values.ingress.tls.secretName | default (printf "%s-tls" (include "platform.fullname" .)) -}}
{{- end -}}

{{- define "platform.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s-nats.%s.svc:4222" (include "platform.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- required "nats.url is required when nats.enabled is false" .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{/*
WOOSTORE_NATS_URL: the in-chart server's, nats.url, or (urlFromSecret) the key nats-url of
secrets.existingSecret, for a URL holding a password. Call with the root context.
*/}}
{{- define "platform.natsUrlEnv" -}}
{{- if .Values.nats.urlFromSecret -}}
{{ include "platform.secretEnv" (dict "ctx" . "name" "WOOSTORE_NATS_URL" "key" "nats-url") }}
{{- else -}}
- name: WOOSTORE_NATS_URL
  value: {{ include "platform.natsUrl" . | quote }}
{{- end -}}
{{- end -}}

{{/*
Pod securityContext; pass the uid. Every pod runs as a fixed non-root uid with the
runtime's default seccomp profile; fsGroup makes volumes writable by that uid.
*/}}
{{- define "platform.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext shared by every container; pass the uid. */}}
{{- define "platform.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* An env entry read from the platform Secret; pass (dict "ctx" $ "name" ... "key" ...). */}}
{{- define "platform.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "platform.secretName" .ctx }}
      key: {{ .key }}
{{- end -}}

{{/*
What shapes the JetStream streams and consumers: woostore-setup (the setup Job) and every
service declare them, and must declare them alike, or an upgrade's setup would undo what the
services set (and drop events past a smaller bound).
*/}}
{{- define "platform.topologyEnv" -}}
- name: WOOSTORE_JETSTREAM_REPLICAS
  value: {{ .Values.nats.streamReplicas | quote }}
- name: WOOSTORE_EVENTS_STREAM_MAX_BYTES
  value: {{ .Values.nats.eventsStreamMaxBytes | int64 | quote }}
- name: WOOSTORE_MAX_STORES_IN_FLIGHT
  value: {{ .Values.settings.maxStoresInFlight | quote }}
- name: WOOSTORE_ACK_WAIT_SECONDS
  value: {{ .Values.settings.ackWaitSeconds | quote }}
{{- end -}}

{{/*
Settings every service reads (shared/woostore_shared/settings.py). Secrets come from the
Secret, never as literal values. Call with the root context.
*/}}
{{- define "platform.env" -}}
{{- $v := .Values -}}
{{ include "platform.natsUrlEnv" . }}
{{- with $v.tracing.otlpEndpoint }}
# Spans go out by OTLP/HTTP (docs/architecture.md, Tracing); none without it.
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{ include "platform.secretEnv" (dict "ctx" . "name" "WOOSTORE_DATABASE_URL" "key" "database-url") }}
{{ include "platform.secretEnv" (dict "ctx" . "name" "WOOSTORE_ADMIN_TOKEN" "key" "admin-token") }}
{{ include "platform.secretEnv" (dict "ctx" . "name" "WOOSTORE_SECRET_KEY" "key" "secret-key") }}
# Explicit, the same in every service (the api reports whether stores are simulated).
- name: WOOSTORE_CLUSTER
  value: {{ $v.cluster.mode | quote }}
# Labels the store namespaces this release makes; another release on the cluster never
# touches them.
- name: WOOSTORE_INSTALLATION
  value: {{ .Release.Name | quote }}
- name: WOOSTORE_BASE_DOMAIN
  value: {{ $v.stores.baseDomain | quote }}
- name: WOOSTORE_WARM_POOL_SIZE
  value: {{ $v.stores.warmPoolSize | quote }}
- name: WOOSTORE_STORE_CURRENCY
  value: {{ $v.stores.defaults.currency | quote }}
- name: WOOSTORE_STORE_COUNTRY
  value: {{ $v.stores.defaults.country | quote }}
- name: WOOSTORE_STORE_STATE
  value: {{ $v.stores.defaults.state | quote }}
- name: WOOSTORE_STORE_LANGUAGE
  value: {{ $v.stores.defaults.language | quote }}
- name: WOOSTORE_STORE_SAMPLE_PRODUCTS
  value: {{ $v.stores.defaults.sampleProducts | quote }}
{{ include "platform.topologyEnv" . }}
- name: WOOSTORE_ROLLOUT_TIMEOUT_SECONDS
  value: {{ $v.settings.rolloutTimeoutSeconds | quote }}
- name: WOOSTORE_PROVISION_DEADLINE_SECONDS
  value: {{ $v.settings.provisionDeadlineSeconds | quote }}
- name: WOOSTORE_REAPER_INTERVAL_SECONDS
  value: {{ $v.settings.reaperIntervalSeconds | quote }}
- name: WOOSTORE_MAX_LIVE_STORES
  value: {{ $v.settings.maxLiveStores | quote }}
- name: WOOSTORE_TENANT_STORE_LIMIT
  value: {{ $v.settings.tenantStoreLimit | quote }}
- name: WOOSTORE_MAX_QUEUED_STORES
  value: {{ $v.settings.maxQueuedStores | quote }}
- name: WOOSTORE_CREATES_PER_MINUTE
  value: {{ $v.settings.createsPerMinute | quote }}
- name: WOOSTORE_TENANT_CREATES_PER_MINUTE
  value: {{ $v.settings.tenantCreatesPerMinute | quote }}
- name: WOOSTORE_TENANT_CHANGES_PER_MINUTE
  value: {{ $v.settings.tenantChangesPerMinute | quote }}
- name: WOOSTORE_TENANT_KEY_LIMIT
  value: {{ $v.settings.tenantKeyLimit | quote }}
- name: WOOSTORE_EVENT_STREAMS_PER_KEY
  value: {{ $v.settings.eventStreamsPerKey | quote }}
- name: WOOSTORE_TENANT_EVENT_STREAMS
  value: {{ $v.settings.tenantEventStreams | quote }}
- name: WOOSTORE_MAX_EVENT_STREAMS
  value: {{ $v.settings.maxEventStreams | quote }}
- name: WOOSTORE_EVENT_MEMORY
  value: {{ $v.settings.eventMemory | quote }}
- name: WOOSTORE_EVENT_REPLAY_WINDOW_SECONDS
  value: {{ $v.settings.eventReplayWindowSeconds | quote }}
- name: WOOSTORE_MAX_BODY_BYTES
  value: {{ $v.settings.maxBodyBytes | quote }}
- name: WOOSTORE_DATABASE_IDLE_SECONDS
  value: {{ $v.settings.databaseIdleSeconds | quote }}
- name: WOOSTORE_LOG_LEVEL
  value: {{ $v.settings.logLevel | quote }}
- name: WOOSTORE_LOG_FORMAT
  value: json
{{- if $v.ingress.enabled }}
# Browsers reach the event stream and the dashboard through the Ingress, on one origin.
- name: WOOSTORE_PUBLIC_EVENTS_URL
  value: {{ printf "%s://%s/api/v1/events" (include "platform.scheme" .) $v.ingress.host | quote }}
- name: WOOSTORE_DASHBOARD_ORIGIN
  value: {{ printf "%s://%s" (include "platform.scheme" .) $v.ingress.host | quote }}
{{- end }}
{{- end -}}

{{/*
NetworkPolicy peers of one egress destination, as a YAML list (fromYamlArray): pods by
namespace labels (and pod labels), pods of the release namespace by pod labels alone, and
addresses by CIDR. Given none of these, any address (0.0.0.0/0 and ::/0): the destination
stays reachable, on its ports only, until the operator narrows it. Pass a dict with any of
namespaceSelector, podSelector, cidrs.
*/}}
{{- define "platform.egressPeers" -}}
{{- $peers := list -}}
{{- if .namespaceSelector -}}
{{- $peer := dict "namespaceSelector" (dict "matchLabels" .namespaceSelector) -}}
{{- with .podSelector }}{{ $_ := set $peer "podSelector" (dict "matchLabels" .) }}{{ end -}}
{{- $peers = append $peers $peer -}}
{{- else if .podSelector -}}
{{- $peers = append $peers (dict "podSelector" (dict "matchLabels" .podSelector)) -}}
{{- end -}}
{{- range .cidrs }}{{ $peers = append $peers (dict "ipBlock" (dict "cidr" .)) }}{{ end -}}
{{- if not $peers -}}
{{- $peers = list (dict "ipBlock" (dict "cidr" "0.0.0.0/0")) (dict "ipBlock" (dict "cidr" "::/0")) -}}
{{- end -}}
{{- toYaml $peers -}}
{{- end -}}

{{/* NetworkPolicy ports, TCP, of a list of port numbers, as a YAML list (fromYamlArray). */}}
{{- define "platform.tcpPorts" -}}
{{- $ports := list -}}
{{- range . }}{{ $ports = append $ports (dict "protocol" "TCP" "port" (int .)) }}{{ end -}}
{{- toYaml $ports -}}
{{- end -}}

{{/*
CEL: the namespace `namespace` (an expression of the admission request) is one of this
installation's stores, named store-* and carrying the ownership labels the provisioner gives
the namespaces it makes (cluster/woostore_cluster/base.py). Call with (dict "ctx" $
"namespace" "namespaceObject").
*/}}
{{- define "platform.isStoreNamespace" -}}
{{- $labels := printf "%s.metadata.labels" .namespace -}}
{{ .namespace }}.metadata.name.startsWith('store-') &&
has({{ $labels }}) &&
'woostore.io/store-id' in {{ $labels }} &&
'app.kubernetes.io/managed-by' in {{ $labels }} &&
{{ $labels }}['app.kubernetes.io/managed-by'] == 'woostore' &&
'woostore.io/installation' in {{ $labels }} &&
{{ $labels }}['woostore.io/installation'] == '{{ .ctx.Release.Name }}'
{{- end -}}
