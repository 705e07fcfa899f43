{{/* Names ---------------------------------------------------------------------------- */}}

{{- define "vllm-fit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vllm-fit.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vllm-fit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vllm-fit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vllm-fit
{{- end -}}

{{- define "vllm-fit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vllm-fit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: admission-webhook
{{- end -}}

{{- define "vllm-fit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vllm-fit.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vllm-fit.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "vllm-fit.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "vllm-fit.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "vllm-fit.certificateName" -}}
{{- printf "%s-serving" (include "vllm-fit.fullname" .) -}}
{{- end -}}

{{/* Names the serving certificate must carry: how the API server reaches the Service. */}}
{{- define "vllm-fit.dnsNames" -}}
{{- $svc := include "vllm-fit.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) | toJson -}}
{{- end -}}

{{/* Checks that fail rendering with a message instead of installing something broken. */}}
{{- define "vllm-fit.validate" -}}
{{- $deadline := .Values.config.deadline_seconds | default 2.0 | float64 -}}
{{- $timeout := .Values.webhook.timeoutSeconds | float64 -}}
{{- if ge $deadline $timeout -}}
{{- fail (printf "config.deadline_seconds (%v) must be below webhook.timeoutSeconds (%v): the server must answer before the API server gives up" .Values.config.deadline_seconds .Values.webhook.timeoutSeconds) -}}
{{- end -}}
{{- if and .Values.tls.existingSecret (not .Values.tls.caBundle) (not .Values.certManager.enabled) -}}
{{- fail "tls.existingSecret needs tls.caBundle (the PEM CA that signed it) for the webhook configurations" -}}
{{- end -}}
{{- if and .Values.webhook.url (not .Values.tls.caBundle) -}}
{{- fail "webhook.url needs tls.caBundle: the PEM CA that signed the certificate served at that URL" -}}
{{- end -}}
{{- if and .Values.webhook.url .Values.certManager.enabled -}}
{{- fail "webhook.url and certManager.enabled are exclusive: cert-manager's certificate is for the in-cluster Service" -}}
{{- end -}}
{{- if and .Values.tls.existingSecret .Values.certManager.enabled -}}
{{- fail "tls.existingSecret and certManager.enabled are exclusive: cert-manager writes its own Secret" -}}
{{- end -}}
{{- end -}}

{{/*
TLS material when the chart generates it: one CA and serving certificate per render, shared by
the Secret and both webhook configurations (memoized on the root context), and reused from the
Secret already in the cluster on upgrade (`lookup`; empty under `helm template`).
*/}}
{{- define "vllm-fit.generatedTLS" -}}
{{- $root := . -}}
{{- if not (index $root "vllmFitTLS") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "vllm-fit.tlsSecretName" .) -}}
{{- $data := dict -}}
{{- if $existing -}}{{- $data = default (dict) $existing.data -}}{{- end -}}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") -}}
{{- $_ := set $root "vllmFitTLS" (dict "ca" (index $data "ca.crt") "cert" (index $data "tls.crt") "key" (index $data "tls.key")) -}}
{{- else -}}
{{- $days := int .Values.tls.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "vllm-fit.fullname" .)) $days -}}
{{- $names := include "vllm-fit.dnsNames" . | fromJsonArray -}}
{{- $cert := genSignedCert (index $names 2) nil $names $days $ca -}}
{{- $_ := set $root "vllmFitTLS" (dict "ca" ($ca.Cert | b64enc) "cert" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- index $root "vllmFitTLS" | toJson -}}
{{- end -}}

{{/* Webhook configurations -------------------------------------------------------------
Mirrors vllm_fit.admission.webhooks.webhook_configurations(); tests/test_chart.py renders
both and compares them, so change the two together.
*/}}

{{- define "vllm-fit.exemptNamespaces" -}}
{{- concat (list "kube-system" .Release.Namespace) .Values.webhook.exemptNamespaces | uniq | sortAlpha | toJson -}}
{{- end -}}

{{- define "vllm-fit.clientConfig" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
clientConfig:
  {{- if $root.Values.webhook.url }}
  url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) $path | quote }}
  caBundle: {{ $root.Values.tls.caBundle | b64enc }}
  {{- else }}
  service:
    name: {{ include "vllm-fit.fullname" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: {{ $path }}
    port: 443
  {{- end }}
  {{- if and (not $root.Values.certManager.enabled) (not $root.Values.webhook.url) }}
  {{- if $root.Values.tls.existingSecret }}
  caBundle: {{ $root.Values.tls.caBundle | b64enc }}
  {{- else }}
  caBundle: {{ (include "vllm-fit.generatedTLS" $root | fromJson).ca }}
  {{- end }}
  {{- end }}
{{- end -}}

{{- define "vllm-fit.webhookAnnotations" -}}
{{- $annotations := deepCopy .Values.webhook.annotations -}}
{{- if .Values.certManager.enabled -}}
{{- $_ := set $annotations "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "vllm-fit.certificateName" .)) -}}
{{- end -}}
{{- toYaml $annotations -}}
{{- end -}}

{{- define "vllm-fit.namespaceExpressions" -}}
- key: kubernetes.io/metadata.name
  operator: NotIn
  values: {{ include "vllm-fit.exemptNamespaces" . }}
- key: {{ .Values.webhook.optOutLabel | quote }}
  operator: DoesNotExist
{{- end -}}

{{/* Labels app / app.kubernetes.io/name = vllm on the metadata at the given path (CEL). */}}
{{- define "vllm-fit.celLabels" -}}
{{- printf "(has(%s.labels) && (('app' in %s.labels && %s.labels['app'] == 'vllm') || ('app.kubernetes.io/name' in %s.labels && %s.labels['app.kubernetes.io/name'] == 'vllm')))" . . . . . -}}
{{- end -}}

{{/*
A container "looks like vLLM" (CEL): its image may be a vLLM image, or its command or args
mention vllm (or args name a vLLM engine flag). Mirrors vllm_fit.admission.webhooks.image_condition(): every configured image
pattern that does not mention vllm adds "all its literal parts are in the image", so custom
images (config.vllm_images) reach the server. Controller-owned objects are sent too: only the
server can check that their controller exists.
*/}}
{{- define "vllm-fit.celImage" -}}
{{- $parts := list "c.image.contains('vllm')" -}}
{{- $builtin := .Values.config.builtin_vllm_images | default (list) -}}
{{- $extra := .Values.config.vllm_images | default (list) -}}
{{- range (concat $builtin $extra) -}}
{{- $pattern := lower . -}}
{{- if not (contains "vllm" $pattern) -}}
{{- $fragments := list -}}
{{- range (regexSplit "[*?]|\\[[^\\]]*\\]" $pattern -1) -}}
{{- if . -}}{{- $fragments = append $fragments (printf "c.image.contains('%s')" .) -}}{{- end -}}
{{- end -}}
{{- $part := "true" -}}
{{- if $fragments -}}{{- $part = printf "(%s)" (join " && " $fragments) -}}{{- end -}}
{{- if not (has $part $parts) -}}{{- $parts = append $parts $part -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- join " || " $parts -}}
{{- end -}}

{{- define "vllm-fit.celPodSpec" -}}
{{- $spec := index . 0 -}}
{{- $c := index . 1 -}}
{{- printf "(%s.containers.exists(c, %s) || (has(%s.initContainers) && %s.initContainers.exists(c, %s)))" $spec $c $spec $spec $c -}}
{{- end -}}

{{- define "vllm-fit.matchConditions" -}}
{{- $c := printf "%s || c.name.contains('vllm') || (has(c.command) && c.command.exists(x, x.contains('vllm'))) || (has(c.args) && c.args.exists(x, x.contains('vllm') || x.contains('tensor-parallel-size') || x.contains('tensor_parallel_size') || x.contains('gpu-memory-utilization') || x.contains('gpu_memory_utilization') || x.contains('max-model-len') || x.contains('max_model_len')))" (include "vllm-fit.celImage" .) -}}
{{- $kinds := "object.kind in ['LeaderWorkerSet', 'InferenceService', 'ServingRuntime', 'ClusterServingRuntime', 'LLMInferenceService', 'Workspace']" -}}
{{- $labels := include "vllm-fit.celLabels" "object.metadata" -}}
{{- $ephemeral := printf "(has(object.spec.ephemeralContainers) && object.spec.ephemeralContainers.exists(c, %s))" $c -}}
{{- $pod := printf "(object.kind == 'Pod' && (%s || %s))" (include "vllm-fit.celPodSpec" (list "object.spec" $c)) $ephemeral -}}
{{- $workload := printf "(object.kind in ['Deployment', 'StatefulSet', 'ReplicaSet', 'DaemonSet', 'Job', 'ReplicationController'] && ((has(object.spec.template.metadata) && %s) || %s))" (include "vllm-fit.celLabels" "object.spec.template.metadata") (include "vllm-fit.celPodSpec" (list "object.spec.template.spec" $c)) -}}
{{- $cron := printf "(object.kind == 'CronJob' && %s)" (include "vllm-fit.celPodSpec" (list "object.spec.jobTemplate.spec.template.spec" $c)) -}}
matchConditions:
  - name: looks-like-vllm
    expression: {{ list $kinds $labels $pod $workload $cron | join " || " | quote }}
{{- end -}}

{{/* Everything a webhook entry shares: the resources the server has handlers for. */}}
{{- define "vllm-fit.webhookCommon" -}}
admissionReviewVersions: ["v1"]
sideEffects: None
failurePolicy: {{ .Values.webhook.failurePolicy }}
matchPolicy: Equivalent
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    # pods/ephemeralcontainers: `kubectl debug` adds containers to a running Pod.
    resources: ["pods", "pods/ephemeralcontainers", "replicationcontrollers"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
  - apiGroups: ["apps"]
    apiVersions: ["v1"]
    resources: ["deployments", "statefulsets", "replicasets", "daemonsets"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
  - apiGroups: ["batch"]
    apiVersions: ["v1"]
    resources: ["jobs", "cronjobs"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
  - apiGroups: ["leaderworkerset.x-k8s.io"]
    apiVersions: ["v1"]
    resources: ["leaderworkersets"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
  - apiGroups: ["serving.kserve.io"]
    apiVersions: ["v1beta1"]
    resources: ["inferenceservices"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
  - apiGroups: ["serving.kserve.io"]
    apiVersions: ["v1alpha1"]
    resources: ["servingruntimes", "clusterservingruntimes", "llminferenceservices"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
  - apiGroups: ["serving.kserve.io"]
    apiVersions: ["v1alpha2"]
    resources: ["llminferenceservices"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
  - apiGroups: ["kaito.sh"]
    apiVersions: ["v1alpha1"]
    resources: ["workspaces"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
  - apiGroups: ["kaito.sh"]
    apiVersions: ["v1beta1"]
    resources: ["workspaces"]
    operations: ["CREATE", "UPDATE"]
    scope: "*"
{{- if .Values.webhook.matchConditions }}
{{ include "vllm-fit.matchConditions" . }}
{{- end }}
{{- end -}}
