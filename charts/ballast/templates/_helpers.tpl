{{/* The chart's name, or nameOverride. */}}
{{- define "ballast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name: the release name when it already contains the
chart's name (release "ballast" gives "ballast-controller", the name the
README and the TLS defaults use), else "<release>-<chart>".
*/}}
{{- define "ballast.fullname" -}}
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

{{- define "ballast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries; pass (dict "ctx" $ "component" "controller"). */}}
{{- define "ballast.labels" -}}
helm.sh/chart: {{ include "ballast.chart" .ctx }}
{{ include "ballast.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: ballast
{{- end }}

{{/* The labels a selector matches (they never change across upgrades). */}}
{{- define "ballast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ballast.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Object names. */}}
{{- define "ballast.controllerName" -}}{{ include "ballast.fullname" . }}-controller{{- end }}
{{- define "ballast.agentName" -}}{{ include "ballast.fullname" . }}-agent{{- end }}
{{- define "ballast.caSecret" -}}{{ include "ballast.fullname" . }}-ca{{- end }}
{{- define "ballast.agentTlsSecret" -}}{{ include "ballast.fullname" . }}-agent-tls{{- end }}
{{- define "ballast.controllerTlsSecret" -}}{{ include "ballast.fullname" . }}-controller-tls{{- end }}

{{/* The link Service's DNS name inside the cluster: what agents dial and
     what the controller's certificate names. */}}
{{- define "ballast.linkHost" -}}
{{ include "ballast.controllerName" . }}.{{ .Release.Namespace }}.svc
{{- end }}

{{- define "ballast.image" -}}
{{- $tag := default .ctx.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The agent's capabilities, by kernel (see values.yaml agent.capabilities):
  bpf      (Linux >= 5.8): BPF loads programs and creates maps, PERFMON lets
           the verifier accept the program's pointer arithmetic (without it:
           "pointer arithmetic ... prohibited for !root"), NET_ADMIN attaches
           XDP, writes neighbour entries and the net sysctls.
  sysAdmin (Linux < 5.8, no CAP_BPF/CAP_PERFMON): SYS_ADMIN stands in for
           both, with NET_ADMIN.
charts/ballast/tests/checks.py holds the same two sets.
*/}}
{{- define "ballast.agentCapabilities" -}}
{{- if eq .Values.agent.capabilities "sysAdmin" }}
- NET_ADMIN
- SYS_ADMIN
{{- else }}
- BPF
- NET_ADMIN
- PERFMON
{{- end }}
{{- end }}

{{/*
The TOA reader's capabilities, by the same kernel choice (measured on Linux
6.18 with the real binary under a reduced bounding set):
  bpf      BPF creates the maps and loads; NET_ADMIN is what loading sockops
           and cgroup sock_addr programs asks for; PERFMON lets the verifier
           accept the sockops program's pointer arithmetic. Any two fail.
  sysAdmin SYS_ADMIN alone passes all three checks.
charts/ballast/tests/checks.py holds the same two sets.
*/}}
{{- define "ballast.toaReaderCapabilities" -}}
{{- if eq .Values.agent.capabilities "sysAdmin" }}
- SYS_ADMIN
{{- else }}
- BPF
- NET_ADMIN
- PERFMON
{{- end }}
{{- end }}

{{- define "ballast.toaReaderName" -}}{{ include "ballast.fullname" . }}-toa-reader{{- end }}

{{/* Where the node's cgroup2 mount appears in the reader's pod. */}}
{{- define "ballast.toaCgroupMount" -}}/host{{ .Values.toaReader.cgroupRoot | trimSuffix "/" }}{{- end }}
