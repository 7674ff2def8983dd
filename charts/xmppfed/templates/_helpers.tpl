{{/*
Chart name, truncated to 63 characters (the limit of a DNS label and of a label value).
*/}}
{{- define "xmppfed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name of the operator's objects: the release name, followed by the chart name
unless the release name already contains it ("xmppfed" → "xmppfed", "edge" → "edge-xmppfed").
*/}}
{{- define "xmppfed.fullname" -}}
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

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "xmppfed.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of the operator's pods, stable for the life of the release: the Deployment's selector and
the Service's. The component "operator" keeps them apart from the proxy and gateway pods the
operator creates (name=xmppfed, component=proxy|gateway, managed-by=xmppfed-operator).
*/}}
{{- define "xmppfed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xmppfed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels of every object the chart renders.
*/}}
{{- define "xmppfed.labels" -}}
helm.sh/chart: {{ include "xmppfed.chart" . }}
{{ include "xmppfed.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: xmppfed
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "xmppfed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "xmppfed.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image: repository@digest when a digest is given, else repository:tag with the
chart's appVersion as the default tag.
*/}}
{{- define "xmppfed.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The image of the proxy and gateway pods the operator creates (XMPPFED_IMAGE): workloadImage, or
the operator's own image, which holds all four binaries, so that one tag pins one version.
*/}}
{{- define "xmppfed.workloadImage" -}}
{{- default (include "xmppfed.image" .) .Values.workloadImage }}
{{- end }}

{{/*
XMPPFED_HTTP_LISTEN: the listen address and the fixed port 8080 (IPv6 addresses in brackets).
*/}}
{{- define "xmppfed.httpListen" -}}
{{- if contains ":" .Values.httpListenAddress }}
{{- printf "[%s]:8080" .Values.httpListenAddress }}
{{- else }}
{{- printf "%s:8080" .Values.httpListenAddress }}
{{- end }}
{{- end }}
