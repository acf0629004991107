{{/* Common labels. */}}
{{- define "sentiops.labels" -}}
app.kubernetes.io/part-of: sentiops
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Image reference: repository:tag, tag defaulting to the chart's appVersion. */}}
{{- define "sentiops.image" -}}
{{- $img := index .root.Values.images .name -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* In-cluster S3 endpoint host:port (MinIO service unless s3.endpoint is set). */}}
{{- define "sentiops.s3Endpoint" -}}
{{- if .Values.s3.endpoint -}}
{{- .Values.s3.endpoint -}}
{{- else -}}
{{- printf "minio.%s.svc.cluster.local:%v" .Release.Namespace .Values.minio.port -}}
{{- end -}}
{{- end -}}

{{- define "sentiops.s3Url" -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.s3.useHttps) (include "sentiops.s3Endpoint" .) -}}
{{- end -}}

{{- define "sentiops.storageUri" -}}
{{- $isvc := .Values.inferenceService -}}
{{- default (printf "s3://%s/models/%s/%s/" .Values.s3.bucket $isvc.name (toString $isvc.modelVersion)) $isvc.storageUri -}}
{{- end -}}

{{- define "sentiops.loggerUrl" -}}
{{- default (printf "http://sentiops-drift.%s.svc.cluster.local:%v/" .Release.Namespace .Values.drift.port) .Values.inferenceService.logger.url -}}
{{- end -}}

{{/* S3 credentials from the user-created Secret. */}}
{{- define "sentiops.s3Env" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.secretName }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.secretName }}
      key: AWS_SECRET_ACCESS_KEY
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- end -}}
