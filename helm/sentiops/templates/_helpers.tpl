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
{{- if eq .Values.drift.mode "sidecar" -}}
{{- default (printf "http://localhost:%v/" .Values.drift.port) .Values.inferenceService.logger.url -}}
{{- else -}}
{{- default (printf "http://sentiops-drift.%s.svc.cluster.local:%v/" .Release.Namespace .Values.drift.port) .Values.inferenceService.logger.url -}}
{{- end -}}
{{- end -}}

{{/* The drift detector's environment (sidecar and service mode). */}}
{{- define "sentiops.driftEnv" -}}
- name: SENTIOPS_DRIFT_PORT
  value: {{ .Values.drift.port | quote }}
- name: SENTIOPS_STORE
  value: {{ printf "s3://%s" .Values.s3.bucket | quote }}
- name: SENTIOPS_MODEL_NAME
  value: {{ .Values.inferenceService.name | quote }}
- name: SENTIOPS_MODEL_VERSION
  value: {{ .Values.inferenceService.modelVersion | quote }}
- name: SENTIOPS_DRIFT_WINDOW_SIZE
  value: {{ .Values.drift.windowSize | quote }}
- name: SENTIOPS_DRIFT_WINDOW_SECONDS
  value: {{ .Values.drift.windowSeconds | quote }}
- name: SENTIOPS_DRIFT_MIN_WINDOW
  value: {{ .Values.drift.minWindow | quote }}
- name: SENTIOPS_DRIFT_P_VALUE
  value: {{ .Values.drift.pValueThreshold | quote }}
- name: SENTIOPS_DRIFT_CONSECUTIVE
  value: {{ .Values.drift.consecutive | quote }}
- name: SENTIOPS_PREDICTION_LOG
  value: {{ .Values.drift.predictionLog | quote }}
- name: SENTIOPS_RETRAIN_ENABLED
  value: {{ .Values.drift.retrain.enabled | quote }}
- name: SENTIOPS_RETRAIN_MODE
  value: kfp
- name: SENTIOPS_KFP_HOST
  value: {{ .Values.drift.retrain.kfpHost | quote }}
- name: SENTIOPS_KFP_EXPERIMENT
  value: {{ .Values.drift.retrain.experiment | quote }}
- name: SENTIOPS_RETRAIN_COOLDOWN
  value: {{ .Values.drift.retrain.cooldownSeconds | quote }}
- name: SENTIOPS_RETRAIN_MIN_LABELS
  value: {{ .Values.drift.retrain.minLabels | quote }}
- name: SENTIOPS_RETRAIN_DATASETS
  value: {{ join "," .Values.drift.retrain.datasets | quote }}
- name: SENTIOPS_RETRAIN_MAX_TOKEN_SHARE
  value: {{ .Values.drift.retrain.guard.maxTokenShare | quote }}
- name: SENTIOPS_RETRAIN_MAX_EXCESS
  value: {{ .Values.drift.retrain.guard.maxExcess | quote }}
- name: SENTIOPS_DRIFT_WORKDIR
  value: /tmp/sentiops-drift
- name: MALLOC_ARENA_MAX
  value: "2"
{{ include "sentiops.storeEnv" . }}
- name: HOME
  value: /tmp
- name: HF_HOME
  value: /tmp/hf
{{- with .Values.drift.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* How a workload reaches the store s3://<s3.bucket> (sentiops.storage): its endpoint,
     region and the credentials. */}}
{{- define "sentiops.storeEnv" -}}
- name: SENTIOPS_S3_ENDPOINT
  value: {{ include "sentiops.s3Url" . | quote }}
- name: SENTIOPS_S3_REGION
  value: {{ .Values.s3.region | quote }}
{{ include "sentiops.s3Env" . }}
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

{{/* Ports of the predictor pods that carry requests (a YAML list; networkPolicy.predictorPorts
     overrides): Knative -> queue-proxy 8012 (HTTP/1), 8013 (h2c), 9090 (autoscaler metrics);
     Standard/RawDeployment -> the KServe agent (9081) when the logger is on, else httpPort. */}}
{{- define "sentiops.predictorPorts" -}}
{{- $isvc := .Values.inferenceService -}}
{{- if .Values.networkPolicy.predictorPorts -}}
{{- toYaml .Values.networkPolicy.predictorPorts -}}
{{- else if has $isvc.deploymentMode (list "Knative" "Serverless") -}}
{{- toYaml (list 8012 8013 9090) -}}
{{- else if $isvc.logger.enabled -}}
{{- toYaml (list 9081) -}}
{{- else -}}
{{- toYaml (list $isvc.httpPort) -}}
{{- end -}}
{{- end -}}

{{/* MLflow's metadata on PostgreSQL (mlflow.backend: postgresql). */}}
{{- define "sentiops.mlflowPostgresBundled" -}}
{{- if and .Values.mlflow.enabled (eq .Values.mlflow.backend "postgresql") (not .Values.mlflow.postgresql.existingSecret) -}}
true
{{- end -}}
{{- end -}}

{{/* MLFLOW_BACKEND_STORE_URI (what `mlflow server --backend-store-uri` reads) from a Secret:
     an existing database's whole URL, or the chart's PostgreSQL with its password. */}}
{{- define "sentiops.mlflowBackendEnv" -}}
{{- $pg := .Values.mlflow.postgresql -}}
{{- if $pg.existingSecret -}}
- name: MLFLOW_BACKEND_STORE_URI
  valueFrom:
    secretKeyRef:
      name: {{ $pg.existingSecret }}
      key: {{ $pg.existingSecretKey }}
{{- else -}}
- name: MLFLOW_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pg.passwordSecret }}
      key: password
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "postgresql://%s:$(MLFLOW_DB_PASSWORD)@mlflow-postgresql.%s.svc.cluster.local:%v/%s" $pg.username .Release.Namespace $pg.port $pg.database | quote }}
{{- end -}}
{{- end -}}

{{/* The shadow rollout (inferenceService.canary.mode: shadow): the name of the shadow's
     InferenceService, <name>-shadow (sentiops/rollout/shadow.py), or "" in canary mode.
     A shadow is mirrored by KServe's Gateway API ingress, which Knative mode does not have:
     that combination fails the render. */}}
{{- define "sentiops.shadow" -}}
{{- $isvc := .Values.inferenceService -}}
{{- if eq (default "canary" $isvc.canary.mode) "shadow" -}}
{{- if has $isvc.deploymentMode (list "Knative" "Serverless") -}}
{{- fail (printf "inferenceService.canary.mode=shadow needs inferenceService.deploymentMode=Standard (KServe's RawDeployment mode) with KServe's Gateway API ingress (ingress.enableGatewayApi: true in KServe's inferenceservice-config): in %s mode a mirrored request is not routed (Knative routes by Host and the mirror's Host gets '-shadow'). Set inferenceService.deploymentMode=Standard, or inferenceService.canary.mode=canary" $isvc.deploymentMode) -}}
{{- end -}}
{{- printf "%s-shadow" $isvc.name -}}
{{- end -}}
{{- end -}}

{{/* Ports of the shadow's pods that carry requests: the model server's httpPort (a shadow
     has no KServe logger, so no KServe agent in front of it; Standard mode only), plus
     networkPolicy.predictorPorts when set. */}}
{{- define "sentiops.shadowPorts" -}}
{{- $isvc := .Values.inferenceService -}}
{{- $ports := list -}}
{{- range .Values.networkPolicy.predictorPorts -}}
{{- $ports = append $ports (int .) -}}
{{- end -}}
{{- if not (has (int $isvc.httpPort) $ports) -}}
{{- $ports = append $ports (int $isvc.httpPort) -}}
{{- end -}}
{{- toYaml $ports -}}
{{- end -}}
