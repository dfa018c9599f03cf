{{/*
Base name for every resource of this store. Truncated to 40 characters so that
"<fullname>-mariadb" stays within the 52-character StatefulSet name limit.
*/}}
{{- define "store.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "store.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "store.wordpress.fullname" -}}
{{- printf "%s-wordpress" (include "store.fullname" .) -}}
{{- end -}}

{{- define "store.mariadb.fullname" -}}
{{- printf "%s-mariadb" (include "store.fullname" .) -}}
{{- end -}}

{{/* Labels carried by every resource. */}}
{{- define "store.labels" -}}
helm.sh/chart: {{ include "store.chart" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: woostore
woostore.io/store-id: {{ .Values.storeId | quote }}
{{- end -}}

{{/*
Labels that never change between chart versions. Used where Kubernetes makes
the field immutable (StatefulSet volumeClaimTemplates). Call like store.selectorLabels.
*/}}
{{- define "store.stableLabels" -}}
{{ include "store.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: woostore
woostore.io/store-id: {{ .ctx.Values.storeId | quote }}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "wordpress"). */}}
{{- define "store.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full label set of one component; call like store.selectorLabels. */}}
{{- define "store.componentLabels" -}}
{{ include "store.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* "repository:tag", or "repository:tag@digest" when a digest pins the image. */}}
{{- define "store.image" -}}
{{- if .digest -}}
{{- printf "%s:%s@%s" .repository .tag .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/*
Namespace of every resource. A store lives in a namespace of its own, made by the
provisioner: refuse the shared system namespaces, where the chart's default-deny
NetworkPolicy (empty podSelector) and ResourceQuota would hit everybody else's pods.
*/}}
{{- define "store.namespace" -}}
{{- $ns := .Release.Namespace -}}
{{- if or (eq $ns "default") (hasPrefix "kube-" $ns) -}}
{{- fail (printf "refusing to install a store into the shared namespace %q: install into the store's own namespace (helm --namespace <the store's namespace>)" $ns) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}

{{/*
The ingress controller as a NetworkPolicy peer: its namespace (by labels), and its pods there
when networkPolicy.ingressController.podSelector names any.
*/}}
{{- define "store.ingressControllerPeer" -}}
{{- $controller := .Values.networkPolicy.ingressController -}}
- namespaceSelector:
    matchLabels:
      {{- toYaml $controller.namespaceSelector | nindent 6 }}
  {{- with $controller.podSelector }}
  podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
  {{- end }}
{{- end -}}

{{/* Container securityContext shared by all containers; pass the uid. */}}
{{- define "store.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod securityContext; pass the uid. */}}
{{- define "store.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The scheme of the store's URL: https when the Ingress terminates TLS. */}}
{{- define "store.scheme" -}}
{{- ternary "https" "http" .Values.tls.enabled -}}
{{- end -}}

{{/*
The store's public URL, for NOTES only: the pods never see the host (WordPress keeps its URL
in its database), so a new host changes the Ingress and nothing that runs.
*/}}
{{- define "store.siteUrl" -}}
{{- printf "%s://%s" (include "store.scheme" .) .Values.host -}}
{{- end -}}

{{/*
How WordPress's containers (the web server and cron) reach the store's database: the
environment both read.
*/}}
{{- define "store.wordpress.databaseEnv" -}}
- name: WORDPRESS_DB_HOST
  value: "{{ include "store.mariadb.fullname" . }}:3306"
- name: WORDPRESS_DB_NAME
  value: {{ .Values.mariadb.database | quote }}
- name: WORDPRESS_DB_USER
  value: {{ .Values.mariadb.user | quote }}
- name: WORDPRESS_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.credentialsSecret }}
      key: db-password
{{- end -}}
