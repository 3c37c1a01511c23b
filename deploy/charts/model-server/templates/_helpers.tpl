{{- define "ms.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ms.selectorLabels" -}}
app.kubernetes.io/name: {{ .Values.kind }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ms.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "ms.selectorLabels" . }}
app.kubernetes.io/component: model-server
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ensemble
{{- end -}}

{{/* Host name apps use to reach the server through the KEDA HTTP add-on interceptor. */}}
{{- define "ms.routeHost" -}}
{{- printf "%s-keda.%s.svc.cluster.local" (include "ms.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "ms.useRoute" -}}
{{- if and .Values.autoscaling.enabled (or .Values.autoscaling.inFlight.enabled .Values.autoscaling.scaleToZero) -}}true{{- end -}}
{{- end -}}

{{/* The server's command line per kind. */}}
{{- define "ms.args" -}}
{{- $v := .Values -}}
{{- if eq $v.kind "tabbyapi" }}
- python3
- main.py
- --config
- /etc/tabbyapi/config.yml
{{- else if eq $v.kind "sglang" }}
- python3
- -m
- sglang.launch_server
- --model-path
- {{ printf "%s/%s" $v.weights.mountPath $v.sglang.modelPath }}
{{- with $v.sglang.tokenizerPath }}
- --tokenizer-path
- {{ printf "%s/%s" $v.weights.mountPath . }}
{{- end }}
{{- with $v.sglang.chatTemplate }}
- --chat-template
- {{ . }}
{{- end }}
{{- with $v.sglang.servedModelName }}
- --served-model-name
- {{ . }}
{{- end }}
{{- with $v.sglang.modelOverrides }}
- --json-model-override-args
- {{ toJson . | quote }}
{{- end }}
- --host
- 0.0.0.0
- --port
- {{ $v.port | quote }}
- --mem-fraction-static
- {{ $v.sglang.memFractionStatic | quote }}
- --enable-metrics
{{- else if eq $v.kind "tei" }}
- text-embeddings-router
- --model-id
- {{ printf "%s/%s" $v.weights.mountPath $v.tei.modelPath }}
- --hostname
- 0.0.0.0
- --port
- {{ $v.port | quote }}
- --prometheus-port
- {{ $v.metrics.port | quote }}
- --max-batch-tokens
- {{ $v.tei.maxBatchTokens | quote }}
- --max-concurrent-requests
- {{ $v.tei.maxConcurrentRequests | quote }}
{{- else if eq $v.kind "torchserve" }}
- torchserve
- --start
- --foreground
- --ts-config
- /etc/torchserve/config.properties
- --model-store
- /home/model-server/model-store
- --models
- {{ printf "%s=%s" $v.torchserve.modelName $v.torchserve.archive }}
- --disable-token-auth
- --ncs
{{- end }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "ms.image" -}}
{{- if .Values.image.private -}}
{{- printf "%s/%s:%s" (required "privateRegistry is required for images we build" .Values.privateRegistry) .Values.image.repository .Values.image.tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the server's bearer key: one per release (two releases never render one object twice). */}}
{{- define "ms.apiKeySecret" -}}
{{- default (printf "%s-api-key" (include "ms.fullname" .)) .Values.apiKey.secretName -}}
{{- end -}}
