{{/*
Names and labels shared by every template. The full name is "<release>-<chart>" unless the
release name already contains the chart name (then the release name alone), cut to 63 characters:
Kubernetes names and label values allow no more.
*/}}
{{- define "fwo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fwo.fullname" -}}
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

{{- define "fwo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release (a Deployment's selector is immutable). */}}
{{- define "fwo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fwo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "fwo.labels" -}}
{{- include "fwo.labelsWith" (list . nil) }}
{{- end }}

{{/*
The standard labels, then commonLabels and an object's own labels (a list of the root context
and that dict, or nil) as one map: the object's own win a shared key, so that
commonLabels.release and serviceMonitor.labels.release never render a repeated key.
*/}}
{{- define "fwo.labelsWith" -}}
{{- $root := index . 0 }}
{{- $own := index . 1 | default dict -}}
helm.sh/chart: {{ include "fwo.chart" $root }}
app.kubernetes.io/name: {{ include "fwo.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: flowable-worker-operator
{{- range $key, $_ := $root.Values.commonLabels }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (eq $key "helm.sh/chart") }}
{{- fail (printf "commonLabels.%s: the chart sets the app.kubernetes.io/* and helm.sh/chart labels itself (a second value would be a repeated key); drop it, or use another label" $key) }}
{{- end }}
{{- end }}
{{- with merge (dict) $own ($root.Values.commonLabels | default dict) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
metadata.annotations of an object: commonAnnotations under the object's own (a list of the root
context and that dict, or nil), which win a shared key. Renders nothing when both are empty.
*/}}
{{- define "fwo.annotations" -}}
{{- $root := index . 0 }}
{{- $own := index . 1 | default dict }}
{{- with merge (dict) $own ($root.Values.commonAnnotations | default dict) }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The operator pods' labels, one map without repeated keys: a repeated key is invalid YAML to some
parsers and silently last-wins to others, and a podLabels entry that changed a selector label
would make the Deployment's selector miss its own pods. podLabels may repeat a selector label
with the same value (merged) and may set app.kubernetes.io/version; any other selector value
fails the render with the key named.
*/}}
{{- define "fwo.podLabels" -}}
{{- $selector := include "fwo.selectorLabels" . | fromYaml }}
{{- $labels := merge (dict) $selector (dict "app.kubernetes.io/version" .Chart.AppVersion) }}
{{- range $key, $value := .Values.podLabels }}
{{- if and (hasKey $selector $key) (ne (toString $value) (get $selector $key)) }}
{{- fail (printf "podLabels.%s: %q would replace the selector label %s=%s of the operator's pods; the chart sets it (drop the key)" $key (toString $value) $key (get $selector $key)) }}
{{- end }}
{{- $_ := set $labels $key (toString $value) }}
{{- end }}
{{- range $key, $value := .Values.commonLabels }}
{{- if not (hasKey $labels $key) }}
{{- $_ := set $labels $key (toString $value) }}
{{- end }}
{{- end }}
{{- toYaml $labels }}
{{- end }}

{{- define "fwo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fwo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fwo.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "fwo.workerImage" -}}
{{- .Values.workerImage | default (printf "ghcr.io/flowable-worker-operator/worker:%s" .Chart.AppVersion) }}
{{- end }}

{{/*
The operator's rules on namespaced resources: the same as deploy/rbac/cluster-role.yaml (and
deploy/rbac/namespaced/role.yaml), used by the ClusterRole (all namespaces) or by one Role per
watched namespace. Exactly the calls the operator and kopf make: tests/cluster/test_rbac.py.
*/}}
{{- define "fwo.namespacedRules" -}}
# The pools: kopf lists and watches them, and merge-patches its finalizer and progress
# annotations; the operator merge-patches their status (kopf too, under status.kopf).
- apiGroups: [flowable-worker.io]
  resources: [externalworkerpools]
  verbs: [list, watch, patch]
- apiGroups: [flowable-worker.io]
  resources: [externalworkerpools/status]
  verbs: [patch]
# The worker Deployment a pool owns: read, create, replace when its template changed; listed
# and watched (only those carrying the operator's pool label) into the operator's cache, so a
# tick reads it from memory instead of a GET.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update]
# Replicas through /scale, as HPA does: owned Deployments and scaleTargetRef Deployments and
# StatefulSets. (Another kind as scaleTargetRef needs get and patch on its /scale as well.)
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale]
  verbs: [get, patch]
# controller.kubernetes.io/pod-deletion-cost on pods that hold job locks, before scaling down.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
# engine.authSecretRef and engine.tls.caSecretRef, read by name, never listed.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events about pools (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# HPAs, to never scale a workload an HPA scales (kopf keeps an index of their targets).
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch]
# The worker pods' PodDisruptionBudget a pool asks for (worker.podDisruptionBudget): read,
# create, merge-patch when the spec changes, delete when the field goes; never listed.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch, delete]
{{- end }}

{{/*
What kopf needs cluster-wide whatever it watches: noticing CRDs. With watchNamespaces it also
lists and watches namespaces (deploy/rbac/namespaced/cluster-role.yaml); with --all-namespaces
it never does.
*/}}
{{- define "fwo.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
