{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "runbook-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every object: the release name, plus the chart name unless the release
name already contains it (a release called runbook-operator gives runbook-operator).
*/}}
{{- define "runbook-operator.fullname" -}}
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

{{/* Labels every object carries. */}}
{{- define "runbook-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "runbook-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: runbook-operator
{{- end }}

{{/* Labels that select the operator pods (immutable in a Deployment: never add to them). */}}
{{- define "runbook-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runbook-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "runbook-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runbook-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Namespaces the operator leaves alone (EXCLUDE_NAMESPACES), comma-separated: excludeNamespaces
plus the release namespace (excludeReleaseNamespace), only when every namespace is watched;
with watchNamespaces the operator sees the listed namespaces only, so nothing is excluded.
*/}}
{{- define "runbook-operator.excludedNamespaces" -}}
{{- $excluded := list }}
{{- if not .Values.watchNamespaces }}
{{- $excluded = concat $excluded .Values.excludeNamespaces }}
{{- if .Values.excludeReleaseNamespace }}
{{- $excluded = append $excluded .Release.Namespace }}
{{- end }}
{{- end }}
{{- join "," (uniq $excluded) }}
{{- end }}

{{/* Image reference: repository:tag, the tag defaulting to the appVersion. */}}
{{- define "runbook-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The operator's rules on namespaced resources: exactly the API calls it makes, derived from its
source (the table in the chart README names the call site of every verb). Rendered into the
ClusterRole (all namespaces) or into one Role per watched namespace.
*/}}
{{- define "runbook-operator.rules" -}}
# Our kinds: watched by the controllers (list, watch), read fresh before acting on a stale
# cache (get), annotated or given a finalizer (patch), status by server-side apply.
- apiGroups: [ops.runbook.dev]
  resources: [runbooks]
  verbs: [get, list, watch, create, patch]
- apiGroups: [ops.runbook.dev]
  resources: [runbookruns]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [ops.runbook.dev]
  resources: [maintenancewindows]
  verbs: [get, list, watch, patch]
- apiGroups: [ops.runbook.dev]
  resources: [bluegreenreleases]
  verbs: [get, list, watch, patch]
- apiGroups: [ops.runbook.dev]
  resources: [backuppolicies]
  verbs: [get, list, watch]
- apiGroups: [ops.runbook.dev]
  resources: [runbooks/status, runbookruns/status, maintenancewindows/status, bluegreenreleases/status, backuppolicies/status]
  verbs: [patch]
# Events through kube's Recorder: a new Event is created, a repeat patches its series.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Runs' concurrency locks (spec.concurrency): Leases labelled ops.runbook.dev/lock in the runs'
# namespaces, watched (list, watch), taken (create, or a patch taking over a finished
# holder's) and released (delete). Never get or update.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [list, watch, create, patch, delete]
# What the caches and observers read. Reads only: every change to a workload, Job, Service,
# pod or Secret is sent impersonating the object's ServiceAccount (below), so that
# ServiceAccount's RBAC decides it, and the operator itself reads no Secret.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [list, watch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
# Acting as an object's identity: spec.serviceAccountName, or the default ServiceAccount
# (value defaultServiceAccount), of the object's own namespace.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [impersonate]
{{- with .Values.rbac.impersonate.serviceAccountNames }}
  resourceNames: {{ toJson . }}
{{- end }}
{{- end }}

{{/*
CEL variables of the RunbookRun admission policies: each approval-related annotation of the new
and the old object, "" when absent (oldObject is null on CREATE).
*/}}
{{- define "runbook-operator.runAnnotationVariables" -}}
{{- range $var, $key := dict "Approve" "approve" "Reject" "reject" "RequestedBy" "requested-by" "RequestedByGroups" "requested-by-groups" "ApprovedBy" "approved-by" "ApprovedByGroups" "approved-by-groups" }}
- name: new{{ $var }}
  expression: >-
    has(object.metadata.annotations) && "ops.runbook.dev/{{ $key }}" in object.metadata.annotations
      ? object.metadata.annotations["ops.runbook.dev/{{ $key }}"] : ""
- name: old{{ $var }}
  expression: >-
    oldObject != null && has(oldObject.metadata.annotations) && "ops.runbook.dev/{{ $key }}" in oldObject.metadata.annotations
      ? oldObject.metadata.annotations["ops.runbook.dev/{{ $key }}"] : ""
{{- end }}
{{- end }}

{{/*
The Secret holding the alert receiver's bearer token.
*/}}
{{- define "runbook-operator.alertsSecret" -}}
{{- default (printf "%s-alerts" (include "runbook-operator.fullname" .)) .Values.alerts.existingSecret -}}
{{- end }}
