{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "runwhen-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, prefixed with the chart name unless it already contains it. */}}
{{- define "runwhen-operator.fullname" -}}
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

{{- define "runwhen-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "runwhen-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runwhen-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "runwhen-operator.labels" -}}
helm.sh/chart: {{ include "runwhen-operator.chart" . }}
{{ include "runwhen-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: runwhen-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "runwhen-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runwhen-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "runwhen-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the operator runs more than one replica and therefore elects a leader (a Lease). */}}
{{- define "runwhen-operator.leaderElection" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/* Name of the Secret holding the chart-managed connection's credentials. */}}
{{- define "runwhen-operator.connectionSecretName" -}}
{{- if .Values.connection.existingSecret }}
{{- .Values.connection.existingSecret }}
{{- else }}
{{- printf "%s-credentials" (include "runwhen-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Rules on the namespaced platform.runwhen.com kinds, shared by the ClusterRole and the Roles
     (the bodies of both kind-rule templates are generated from api/kinds.py by
     `runwhen-operator crds --write`: do not edit them). */}}
{{- define "runwhen-operator.namespacedKindRules" -}}
- apiGroups: ["platform.runwhen.com"]
  resources:
    - runwhenconnections
    - workspaces
    - workflows
    - personas
    - runnerlocations
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["platform.runwhen.com"]
  resources: ["workflowruns"]
  verbs: ["get", "list", "watch", "patch", "update", "delete"]
- apiGroups: ["platform.runwhen.com"]
  resources:
    - runwhenconnections/status
    - workspaces/status
    - workflows/status
    - personas/status
    - workflowruns/status
    - runnerlocations/status
  verbs: ["get", "patch", "update"]
- apiGroups: ["platform.runwhen.com"]
  resources:
    - runwhenconnections/finalizers
    - workspaces/finalizers
    - workflows/finalizers
    - personas/finalizers
    - workflowruns/finalizers
    - runnerlocations/finalizers
  verbs: ["update"]
{{- end }}

{{/* Rules on the cluster-scoped ClusterRunWhenConnection kind. */}}
{{- define "runwhen-operator.clusterKindRules" -}}
- apiGroups: ["platform.runwhen.com"]
  resources: ["clusterrunwhenconnections"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["platform.runwhen.com"]
  resources: ["clusterrunwhenconnections/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["platform.runwhen.com"]
  resources: ["clusterrunwhenconnections/finalizers"]
  verbs: ["update"]
{{- end }}

{{/* Secrets are read, created and patched by name only: no list, no watch. */}}
{{- define "runwhen-operator.secretRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "update"]
{{- end }}

{{- define "runwhen-operator.eventRules" -}}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{- define "runwhen-operator.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
Leader election: the Lease named after the release, in the release namespace. `create` cannot be
limited to a name (the name is not known when a create is authorized); reading and renewing can.
*/}}
{{- define "runwhen-operator.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "runwhen-operator.fullname" . | quote }}]
  verbs: ["get", "update"]
{{- end }}
