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
{{ include "sentiops.storeEnv" (dict "root" . "identity" "drift") }}
{{- include "sentiops.keyEnv" . }}
- name: HOME
  value: /tmp
- name: HF_HOME
  value: /tmp/hf
{{- with .Values.drift.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* How a workload reaches the store s3://<s3.bucket> (sentiops.storage): its endpoint,
     region and the credentials of its own S3 identity.
     Arguments: dict "root" $ "identity" <predictor|drift|mlflow|pipeline>. */}}
{{- define "sentiops.storeEnv" -}}
- name: SENTIOPS_S3_ENDPOINT
  value: {{ include "sentiops.s3Url" .root | quote }}
- name: SENTIOPS_S3_REGION
  value: {{ .root.Values.s3.region | quote }}
{{ include "sentiops.s3Env" . }}
{{- end -}}

{{/* The S3 credentials of one least-privilege identity (s3.identities.<identity>.secretName,
     a user-created Secret: keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Never the root
     user's (s3.rootSecretName): only MinIO and the bucket Job read that.
     Arguments: dict "root" $ "identity" <name>. */}}
{{- define "sentiops.s3Env" -}}
{{- $secret := include "sentiops.s3Secret" . -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: AWS_SECRET_ACCESS_KEY
- name: AWS_DEFAULT_REGION
  value: {{ .root.Values.s3.region | quote }}
{{- end -}}

{{/* The Secret name of an S3 identity. Arguments: dict "root" $ "identity" <name>. */}}
{{- define "sentiops.s3Secret" -}}
{{- $id := index .root.Values.s3.identities .identity -}}
{{- required (printf "s3.identities.%s.secretName: name the Secret with this component's S3 credentials" .identity) $id.secretName -}}
{{- end -}}

{{/* The S3 identities and what each may do, as IAM policy documents (JSON after
     `fromYaml`): the bucket Job creates them as MinIO policies (mc admin policy create) and
     docs/security-cluster.md lists the same documents for an external S3 (a test compares
     them). The labelling receiver's is rendered always, created by the Job only while
     labelling.enabled. Keys: s3.bucket's layout (sentiops/store/layout.py, sentiops.config.model_uri):
     models/<name>/<version>/, predictions/, labelling/, labels/ (labels/feedback/: the
     feedback API), retrain/ (triggers/, held/: the drift detector's; released/: people's).
     ListBucket is on the whole bucket for every identity that uses it: S3 and MinIO
     authorise HeadBucket (the store's bucket check) as ListBucket, which a prefix condition
     would refuse; it shows key names, never contents. */}}
{{- define "sentiops.s3Policies" -}}
{{- $data := printf "arn:aws:s3:::%s" .Values.s3.bucket -}}
{{- $mlflow := printf "arn:aws:s3:::%s" .Values.s3.mlflowBucket -}}
{{- $bucket := list "s3:GetBucketLocation" "s3:ListBucket" -}}
{{- $put := list "s3:PutObject" "s3:AbortMultipartUpload" "s3:ListMultipartUploadParts" -}}
{{- $rw := append (prepend $put "s3:GetObject") "s3:DeleteObject" -}}
predictor:
  Version: "2012-10-17"
  Statement:
    - Sid: ListTheDataBucket
      Effect: Allow
      Action: {{ toJson $bucket }}
      Resource: [{{ $data | quote }}]
    - Sid: ReadModelsPredictionsLabels
      Effect: Allow
      Action: ["s3:GetObject"]
      Resource:
        - {{ printf "%s/models/*" $data | quote }}
        - {{ printf "%s/predictions/*" $data | quote }}
        - {{ printf "%s/labels/*" $data | quote }}
    - Sid: WriteFeedbackLabels
      Effect: Allow
      Action: {{ toJson $put }}
      Resource: [{{ printf "%s/labels/feedback/*" $data | quote }}]
drift:
  Version: "2012-10-17"
  Statement:
    - Sid: ListTheDataBucket
      Effect: Allow
      Action: {{ toJson $bucket }}
      Resource: [{{ $data | quote }}]
    - Sid: ReadModelsLabelsReleased
      Effect: Allow
      Action: ["s3:GetObject"]
      Resource:
        - {{ printf "%s/models/*" $data | quote }}
        - {{ printf "%s/labels/*" $data | quote }}
        - {{ printf "%s/retrain/released/*" $data | quote }}
    - Sid: WritePredictionsLabellingRetrain
      Effect: Allow
      Action: {{ toJson $put }}
      Resource:
        - {{ printf "%s/predictions/*" $data | quote }}
        - {{ printf "%s/labelling/*" $data | quote }}
        - {{ printf "%s/retrain/*" $data | quote }}
    # a held burst of labels is released by people (or the pipeline), never by the detector
    - Sid: NeverRelease
      Effect: Deny
      Action: ["s3:PutObject", "s3:DeleteObject"]
      Resource: [{{ printf "%s/retrain/released/*" $data | quote }}]
mlflow:
  Version: "2012-10-17"
  Statement:
    - Sid: ListTheMlflowBucket
      Effect: Allow
      Action: {{ toJson $bucket }}
      Resource: [{{ $mlflow | quote }}]
    - Sid: ReadWriteArtifacts
      Effect: Allow
      Action: {{ toJson $rw }}
      Resource: [{{ printf "%s/*" $mlflow | quote }}]
labelling:
  Version: "2012-10-17"
  Statement:
    - Sid: ListTheDataBucket
      Effect: Allow
      Action: {{ toJson $bucket }}
      Resource: [{{ $data | quote }}]
    - Sid: ReadQueueSampleFeedback
      Effect: Allow
      Action: ["s3:GetObject"]
      Resource:
        - {{ printf "%s/labelling/*" $data | quote }}
        - {{ printf "%s/predictions/*" $data | quote }}
        - {{ printf "%s/labels/feedback/*" $data | quote }}
    - Sid: WriteFeedbackLabels
      Effect: Allow
      Action: {{ toJson $put }}
      Resource: [{{ printf "%s/labels/feedback/*" $data | quote }}]
pipeline:
  Version: "2012-10-17"
  Statement:
    - Sid: ListBothBuckets
      Effect: Allow
      Action: {{ toJson $bucket }}
      Resource: [{{ $data | quote }}, {{ $mlflow | quote }}]
    - Sid: ReadWriteBothBuckets
      Effect: Allow
      Action: {{ toJson $rw }}
      Resource: [{{ printf "%s/*" $data | quote }}, {{ printf "%s/*" $mlflow | quote }}]
{{- end -}}

{{/* Render-time checks that hold for every template (included by inferenceservice.yaml). */}}
{{- define "sentiops.validate" -}}
{{- $isvc := .Values.inferenceService -}}
{{- if and $isvc.feedback.enabled (not .Values.auth.existingSecret) -}}
{{- fail (printf "inferenceService.feedback.enabled=true needs auth.existingSecret: labels POSTed to /v1/models/%s:feedback become training data, so writing them must need a token. Create the token Secret (scripts/cluster/create-secrets.sh makes sentiops-annotator-tokens with a random token; or kubectl -n %s create secret generic sentiops-annotator-tokens --from-literal=team-a=$(openssl rand -hex 24)) and set auth.existingSecret=sentiops-annotator-tokens, or set inferenceService.feedback.enabled=false" $isvc.name .Release.Namespace) -}}
{{- end -}}
{{- if and (or $isvc.feedback.enabled .Values.drift.enabled) (not .Values.evalSample.existingSecret) -}}
{{- fail (printf "evalSample.existingSecret is empty, but the predictor (inferenceService.feedback.enabled) and the drift detector (drift.enabled) need the evaluation-sample key. Create the Secret (scripts/cluster/create-secrets.sh; or kubectl -n %s create secret generic sentiops-eval-sample --from-literal=key=$(openssl rand -hex 32)) and set evalSample.existingSecret=sentiops-eval-sample, or set inferenceService.feedback.enabled=false and drift.enabled=false" .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* Where the two key Secrets are mounted (read-only). */}}
{{- define "sentiops.evalSampleDir" -}}/var/run/sentiops/eval-sample{{- end -}}
{{- define "sentiops.modelVerifyDir" -}}/var/run/sentiops/model-verify{{- end -}}

{{/* The key files' environment of the predictor and the drift container: the evaluation
     sample's key and the model-signing public key (only verify.pub is mounted). */}}
{{- define "sentiops.keyEnv" -}}
{{- if .Values.evalSample.existingSecret }}
- name: SENTIOPS_SAMPLE_SECRET_FILE
  value: {{ printf "%s/key" (include "sentiops.evalSampleDir" .) | quote }}
{{- end }}
{{- if .Values.modelSigning.existingSecret }}
- name: SENTIOPS_MODEL_VERIFY_KEY_FILE
  value: {{ printf "%s/verify.pub" (include "sentiops.modelVerifyDir" .) | quote }}
{{- end }}
{{- end -}}

{{- define "sentiops.keyMounts" -}}
{{- if .Values.evalSample.existingSecret }}
- name: eval-sample
  mountPath: {{ include "sentiops.evalSampleDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.modelSigning.existingSecret }}
- name: model-verify
  mountPath: {{ include "sentiops.modelVerifyDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sentiops.keyVolumes" -}}
{{- with .Values.evalSample.existingSecret }}
- name: eval-sample
  secret:
    secretName: {{ . }}
    items:
      - {key: key, path: key}
    defaultMode: 0440
{{- end }}
{{- with .Values.modelSigning.existingSecret }}
# only the public key: the private one (signing.key) is the pipeline's
- name: model-verify
  secret:
    secretName: {{ . }}
    items:
      - {key: verify.pub, path: verify.pub}
    defaultMode: 0444
{{- end }}
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


{{/* The S3 identities the bucket Job creates: labelling's only while the receiver is on. */}}
{{- define "sentiops.s3Identities" -}}
{{- $ids := list "predictor" "drift" "mlflow" "pipeline" -}}
{{- if .Values.labelling.enabled -}}
{{- $ids = append $ids "labelling" -}}
{{- end -}}
{{- toYaml $ids -}}
{{- end -}}

{{/* Label Studio's default blocked networks for outgoing requests (label_studio/core/utils/
     io.py validate_ip, 1.23.2), in its order. */}}
{{- define "sentiops.labelStudioBannedSubnets" -}}
{{- toYaml (list "0.0.0.0/8" "10.0.0.0/8" "100.64.0.0/10" "127.0.0.0/8" "169.254.0.0/16"
    "172.16.0.0/12" "192.0.0.0/24" "192.0.2.0/24" "192.88.99.0/24" "192.168.0.0/16"
    "198.18.0.0/15" "198.51.100.0/24" "203.0.113.0/24" "224.0.0.0/4" "233.252.0.0/24"
    "240.0.0.0/4" "255.255.255.255/32" "::/128" "::1/128" "::ffff:0:0/96" "::ffff:0:0:0/96"
    "64:ff9b::/96" "64:ff9b:1::/48" "100::/64" "2001:0000::/32" "2001:20::/28" "2001:db8::/32"
    "2002::/16" "fc00::/7" "fe80::/10" "ff00::/8") -}}
{{- end -}}

{{/* USER_ADDITIONAL_BANNED_SUBNETS: the default list minus labelStudio.webhookAllowedSubnets
     (each must be an entry of it: a render-time check). */}}
{{- define "sentiops.labelStudioBanned" -}}
{{- $default := include "sentiops.labelStudioBannedSubnets" . | fromYamlArray -}}
{{- $allowed := .Values.labelStudio.webhookAllowedSubnets | default list -}}
{{- range $allowed -}}
{{- if not (has . $default) -}}
{{- fail (printf "labelStudio.webhookAllowedSubnets: %q is not one of Label Studio's blocked networks; name entries of its list as they are written there: %s" . (join ", " $default)) -}}
{{- end -}}
{{- end -}}
{{- $banned := list -}}
{{- range $default -}}
{{- if not (has . $allowed) -}}
{{- $banned = append $banned . -}}
{{- end -}}
{{- end -}}
{{- join "," $banned -}}
{{- end -}}

{{/* The Label Studio the receiver talks to: the chart's Service or labelStudio.url. */}}
{{- define "sentiops.labelStudioUrl" -}}
{{- if .Values.labelStudio.enabled -}}
{{- printf "http://label-studio.%s.svc.cluster.local:%v" .Release.Namespace .Values.labelStudio.port -}}
{{- else -}}
{{- .Values.labelStudio.url -}}
{{- end -}}
{{- end -}}

{{/* The receiver's URL as Label Studio calls it (its webhooks). */}}
{{- define "sentiops.labellingUrl" -}}
{{- default (printf "http://sentiops-labelling.%s.svc.cluster.local:%v" .Release.Namespace .Values.labelling.port) .Values.labelling.publicUrl -}}
{{- end -}}

{{/* Label Studio's own PostgreSQL (labelStudio.enabled, no existing database). */}}
{{- define "sentiops.labelStudioPostgresBundled" -}}
{{- if and .Values.labelStudio.enabled (not .Values.labelStudio.postgresql.existingSecret) -}}
true
{{- end -}}
{{- end -}}

{{/* Render-time checks of the labelling receiver and Label Studio (labelling.yaml). */}}
{{- define "sentiops.validateLabelling" -}}
{{- $ls := .Values.labelStudio -}}
{{- $l := .Values.labelling -}}
{{- if and $ls.enabled (or $ls.url $ls.existingTokenSecret) -}}
{{- fail "labelStudio.enabled=true runs Label Studio in the chart, and labelStudio.url/labelStudio.existingTokenSecret name an existing one: choose one. Either set labelStudio.url= and labelStudio.existingTokenSecret= (the chart's instance; its admin token comes from labelStudio.admin.secret), or set labelStudio.enabled=false" -}}
{{- end -}}
{{- if and $l.enabled (not $ls.enabled) (not (and $ls.url $ls.existingTokenSecret)) -}}
{{- fail (printf "labelling.enabled=true needs a Label Studio: set labelStudio.enabled=true (the chart runs one: make secrets LABELLING=1 creates its Secrets), or point at an existing instance with labelStudio.url=https://... and labelStudio.existingTokenSecret=<a Secret with its API token under key %q> (kubectl -n %s create secret generic labelstudio-token --from-literal=%s=<token>)" $ls.existingTokenSecretKey .Release.Namespace $ls.existingTokenSecretKey) -}}
{{- end -}}
{{- if and $l.enabled (eq $l.sink "api") (not .Values.inferenceService.feedback.enabled) -}}
{{- fail "labelling.sink=api sends labels to the predictor's feedback API, but inferenceService.feedback.enabled=false. Turn the feedback API on, or set labelling.sink=store (the receiver writes s3://<s3.bucket>/labels/feedback/ through the same intake with its own S3 identity)" -}}
{{- end -}}
{{- if and $l.enabled (eq $l.sink "store") (not .Values.evalSample.existingSecret) -}}
{{- fail "labelling.sink=store stores labels with their evaluation-sample decision and needs the evaluation-sample key: set evalSample.existingSecret=sentiops-eval-sample (scripts/cluster/create-secrets.sh makes it), or set labelling.sink=api" -}}
{{- end -}}
{{- if and $l.enabled (not $l.webhookSecret) -}}
{{- fail (printf "labelling.webhookSecret is empty: the receiver refuses webhooks without the shared secret. Create it (make secrets LABELLING=1; or kubectl -n %s create secret generic sentiops-labelling-webhook --from-literal=secret=$(openssl rand -hex 32)) and set labelling.webhookSecret=sentiops-labelling-webhook" .Release.Namespace) -}}
{{- end -}}
{{- end -}}
