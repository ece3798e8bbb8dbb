{{/* Names and labels shared by every template. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.fullname" -}}
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

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.leaseName" -}}
{{- default (printf "%s-leader" (include "sluice.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "sluice.alertSecretName" -}}
{{- default (printf "%s-alert-token" (include "sluice.fullname" .)) .Values.alerts.token.existingSecret }}
{{- end }}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The namespaced permissions Sluice uses, verb by verb (see cluster/kube.py, controller/*,
handlers.py and the routers). Shared by the ClusterRole and the per-namespace Roles.
*/}}
{{- define "sluice.rules" -}}
# Rollouts: kopf lists and watches; the action annotation is removed with a patch.
- apiGroups: [sluice.dev]
  resources: [rollouts]
  verbs: [list, watch, patch]
- apiGroups: [sluice.dev]
  resources: [rollouts/status, analysisruns/status]
  verbs: [update]
# AnalysisRuns are Sluice's children: created, terminated (patch), pruned (delete); an
# alert's run is read back (get) when a second alert of one batch finds it made (409).
- apiGroups: [sluice.dev]
  resources: [analysisruns]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [sluice.dev]
  resources: [analysistemplates]
  verbs: [get]
# The two slot Deployments (and a judge's baseline Deployment) and the Services of a
# Rollout; a workloadRef's Deployment is read (get), labelled and, with scaleDown, scaled.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# Job gates: a step's Job is created, read back after a kill (get), pruned (delete).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Sluice posts its own Events (kopf's posting is off).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# ConfigMaps: notifications read the namespace's sluice-notifications (get); trackConfig
# watches the ones labelled sluice.dev/track-config, labels those a trackConfig Rollout
# names (patch), and makes and prunes their copies.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
{{- if .Values.rbac.trackSecrets }}
# trackConfig for Secrets (--track-secrets): the same on Secrets.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
{{- end }}
{{- if .Values.rbac.analysisSecrets }}
# Analysis arguments from secretKeyRef and Prometheus credentials.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
{{- with .Values.rbac.trafficRouters }}
{{- if .ingress }}
# Sluice owns the canary Ingresses it creates beside yours.
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch, create, update, patch, delete]
{{- end }}
{{- if .istio }}
# The user's VirtualService and DestinationRule are written whole (a conditional PUT), never patched.
- apiGroups: [networking.istio.io]
  resources: [virtualservices, destinationrules]
  verbs: [get, list, watch, update]
{{- end }}
{{- if .gatewayApi }}
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, update]
{{- end }}
{{- if .smi }}
- apiGroups: [split.smi-spec.io]
  resources: [trafficsplits]
  verbs: [get, list, watch, create, update, patch, delete]
{{- end }}
{{- end }}
{{- end }}
