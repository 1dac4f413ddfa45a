{{/* Object-name prefix: the release name, or <release>-<chart> when it lacks the chart name. */}}
{{- define "runsecrets.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "runsecrets.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "runsecrets.labels" -}}
app.kubernetes.io/name: {{ include "runsecrets.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (list $ "server"). */}}
{{- define "runsecrets.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "runsecrets.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Labels of one component's objects. */}}
{{- define "runsecrets.componentLabels" -}}
{{ include "runsecrets.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "runsecrets.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Object names. */}}
{{- define "runsecrets.serverName" -}}{{ include "runsecrets.fullname" . }}-server{{- end -}}
{{- define "runsecrets.nodeName" -}}{{ include "runsecrets.fullname" . }}-node{{- end -}}
{{- define "runsecrets.webhookServiceName" -}}{{ include "runsecrets.fullname" . }}-webhook{{- end -}}
{{- define "runsecrets.deliveryServiceName" -}}{{ include "runsecrets.fullname" . }}-delivery{{- end -}}
{{- define "runsecrets.keyringSecret" -}}{{ default (printf "%s-keyring" (include "runsecrets.fullname" .)) .Values.server.keyringSecret }}{{- end -}}
{{- define "runsecrets.publicKeysConfigMap" -}}{{ default (printf "%s-public-keys" (include "runsecrets.fullname" .)) .Values.server.publicKeysConfigMap }}{{- end -}}
{{- define "runsecrets.caConfigMap" -}}{{ include "runsecrets.fullname" . }}-ca{{- end -}}
{{- define "runsecrets.certificateName" -}}{{ include "runsecrets.fullname" . }}-tls{{- end -}}
{{- define "runsecrets.mutatingWebhookName" -}}{{ include "runsecrets.fullname" . }}{{- end -}}
{{- define "runsecrets.validatingWebhookName" -}}{{ include "runsecrets.fullname" . }}{{- end -}}
{{/* server mode: the Secret (release namespace) where the server keeps its CA (ca.crt, ca.key).
Not `<fullname>-ca`: in certManager mode cert-manager writes its CA there (kubernetes.io/tls, no
ca.key), and that Secret outlives a switch of tls.mode. */}}
{{- define "runsecrets.caSecret" -}}{{ default (printf "%s-server-ca" (include "runsecrets.fullname" .)) .Values.tls.server.caSecret }}{{- end -}}

{{/* The Secret holding the serving certificate (tls.crt, tls.key; ca.crt except in secret mode). */}}
{{- define "runsecrets.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.existingSecret is required when tls.mode is secret: the name of a kubernetes.io/tls Secret in the release namespace" .Values.tls.existingSecret -}}
{{- else -}}
{{- include "runsecrets.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{/* Every DNS name clients use for the server: both Services, short and fully qualified. */}}
{{- define "runsecrets.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list -}}
{{- range $svc := list (include "runsecrets.webhookServiceName" .) (include "runsecrets.deliveryServiceName" .) -}}
{{- $names = append $names (printf "%s.%s.svc" $svc $ns) -}}
{{- $names = append $names (printf "%s.%s.svc.%s" $svc $ns $.Values.clusterDomain) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/*
helm mode: the CA and serving certificate, made once per render and shared by every template
(memoised in .Values, which all templates share), and reused from the existing Secret on upgrade
so the CA in the webhook configurations does not change. `lookup` is empty under
`helm template`: every such render makes a new CA.
Returns JSON {"ca": PEM, "crt": PEM, "key": PEM}.
*/}}
{{- define "runsecrets.helmTLS" -}}
{{- if not (hasKey .Values "__runsecretsGeneratedTLS") -}}
{{- $tls := dict -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "runsecrets.tlsSecretName" .) -}}
{{- if and $existing (hasKey ($existing.data | default dict) "ca.crt") (hasKey ($existing.data | default dict) "tls.crt") (hasKey ($existing.data | default dict) "tls.key") -}}
{{- $_ := set $tls "ca" (index $existing.data "ca.crt" | b64dec) -}}
{{- $_ := set $tls "crt" (index $existing.data "tls.crt" | b64dec) -}}
{{- $_ := set $tls "key" (index $existing.data "tls.key" | b64dec) -}}
{{- else -}}
{{- $days := int .Values.tls.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "runsecrets.fullname" .)) $days -}}
{{- $dns := include "runsecrets.dnsNames" . | fromJsonArray -}}
{{- $cert := genSignedCert (first $dns) nil $dns $days $ca -}}
{{- $_ := set $tls "ca" $ca.Cert -}}
{{- $_ := set $tls "crt" $cert.Cert -}}
{{- $_ := set $tls "key" $cert.Key -}}
{{- end -}}
{{- $_ := set .Values "__runsecretsGeneratedTLS" $tls -}}
{{- end -}}
{{- toJson (get .Values "__runsecretsGeneratedTLS") -}}
{{- end -}}

{{/* The webhook clientConfig.caBundle line (helm and secret modes); nothing for cert-manager,
whose cainjector fills it from the annotation below, nor for server mode, where the server
patches it in (--publish-ca-to). */}}
{{- define "runsecrets.caBundle" -}}
{{- if eq .Values.tls.mode "helm" -}}
caBundle: {{ (include "runsecrets.helmTLS" . | fromJson).ca | b64enc }}
{{- else if eq .Values.tls.mode "secret" -}}
caBundle: {{ include "runsecrets.secretCABundle" . }}
{{- end -}}
{{- end -}}

{{/* secret mode: tls.caBundle, required and checked to be base64 of a PEM certificate. */}}
{{- define "runsecrets.secretCABundle" -}}
{{- $b := required "tls.caBundle is required when tls.mode is secret: base64 of the PEM CA certificate that signed tls.existingSecret (e.g. `base64 -w0 ca.crt`)" .Values.tls.caBundle -}}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec $b)) -}}
{{- fail "tls.caBundle must be base64 of a PEM certificate (-----BEGIN CERTIFICATE-----)" -}}
{{- end -}}
{{- $b -}}
{{- end -}}

{{- define "runsecrets.webhookAnnotations" -}}
{{- if eq .Values.tls.mode "certManager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "runsecrets.certificateName" .) }}
{{- end }}
{{- end -}}

{{/* Changes when the certificate material changes, so the server pods roll. */}}
{{- define "runsecrets.tlsChecksum" -}}
{{- if eq .Values.tls.mode "helm" -}}
{{- include "runsecrets.helmTLS" . | sha256sum -}}
{{- else -}}
{{- toJson (omit .Values.tls "server") | sha256sum -}}
{{- end -}}
{{- end -}}

{{/* Namespaces no webhook may see: kube-system, the release namespace, and any extra. */}}
{{- define "runsecrets.namespaceExclusion" -}}
- key: kubernetes.io/metadata.name
  operator: NotIn
  values:
    {{- toYaml (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq) | nindent 4 }}
{{- end -}}
