#!/usr/bin/env bash
# Create the Secrets the chart names (it never holds a credential or key) in $NAMESPACE, from
# files kept outside the repository in $SENTIOPS_CONFIG_DIR (default ~/.config/sentiops,
# mode 600; generated with random values on first use). Nothing is written into the repo.
#
#   sentiops-s3-root         MinIO's root user (MinIO and the bucket Job only)       s3.env
#   sentiops-s3-predictor    S3 identity of the model server (+ KServe annotations)  s3-predictor.env
#   sentiops-s3-drift        S3 identity of the drift detector                       s3-drift.env
#   sentiops-s3-mlflow       S3 identity of the MLflow server                        s3-mlflow.env
#   sentiops-s3              S3 identity of the pipeline's steps                     s3-pipeline.env
#   sentiops-annotator-tokens  one annotator token (key $ANNOTATOR_TEAM)             annotator-tokens.env
#   sentiops-eval-sample     the evaluation-sample key (key "key")                   eval-sample.env
#   sentiops-model-signing   Ed25519 signing.key + verify.pub                        model-signing/
#
# With LABELLING=1 (labelling.enabled, labelStudio.enabled; docs/labelling.md) also:
#   sentiops-s3-labelling    S3 identity of the labelling receiver                   s3-labelling.env
#   sentiops-annotator-tokens  key "labelstudio": the receiver's feedback token     labelstudio-token.env
#   sentiops-labelling-webhook  the webhooks' shared secret (key "secret")           labelling-webhook.env
#   sentiops-labelstudio     Label Studio's admin: keys password, token (40 chars)   labelstudio.env
#   sentiops-labelstudio-postgresql  its database's password (key "password")      labelstudio-postgresql.env
#
# The S3 Secrets are refreshed from their files on every run (the bucket Job makes MinIO's
# users match them). The other three are created only when missing, never replaced: tokens
# are rotated in place (docs/security-cluster.md), a new sample key would change which
# predictions form the evaluation sample, and a new signing key would fail every model signed
# before. The pipeline's two Secrets (sentiops-s3, sentiops-model-signing) are also created
# in $KFP_NAMESPACE (default kubeflow: where KFP standalone runs the steps) when it exists;
# KFP_NAMESPACE= skips that.
set -euo pipefail
NAMESPACE="${NAMESPACE:-sentiops}"
KFP_NAMESPACE="${KFP_NAMESPACE-kubeflow}"
SENTIOPS_CONFIG_DIR="${SENTIOPS_CONFIG_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/sentiops}"
S3_ENV_FILE="${S3_ENV_FILE:-$SENTIOPS_CONFIG_DIR/s3.env}"
S3_ENDPOINT="${S3_ENDPOINT:-minio.${NAMESPACE}.svc.cluster.local:9000}"
S3_USE_HTTPS="${S3_USE_HTTPS:-0}"
S3_REGION="${S3_REGION:-us-east-1}"
ANNOTATOR_TEAM="${ANNOTATOR_TEAM:-team-a}"
LABELLING="${LABELLING:-0}"
KUBECTL="${KUBECTL:-kubectl}"
OPENSSL="${OPENSSL:-openssl}"

mkdir -p "$SENTIOPS_CONFIG_DIR"
chmod 700 "$SENTIOPS_CONFIG_DIR"
umask 077
hex() { "$OPENSSL" rand -hex "$1"; }

# <file> <access key prefix>: S3 credentials, generated once
s3_env() {
  [ -f "$1" ] && return
  {
    echo "AWS_ACCESS_KEY_ID=$2-$(hex 5)"
    echo "AWS_SECRET_ACCESS_KEY=$(hex 24)"
  } > "$1"
  echo "generated S3 credentials in $1"
}

# <namespace> <secret> [kubectl create secret generic args...]: create or refresh
apply_secret() {
  local ns="$1" name="$2"
  shift 2
  "$KUBECTL" -n "$ns" create secret generic "$name" "$@" --dry-run=client -o yaml \
    | "$KUBECTL" apply -f - >/dev/null
  echo "Secret $name in $ns: applied"
}

# <namespace> <secret>: exists?
has_secret() { "$KUBECTL" -n "$1" get secret "$2" >/dev/null 2>&1; }

"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
kfp_ns=""
if [ -n "$KFP_NAMESPACE" ] && [ "$KFP_NAMESPACE" != "$NAMESPACE" ] \
    && "$KUBECTL" get namespace "$KFP_NAMESPACE" >/dev/null 2>&1; then
  kfp_ns="$KFP_NAMESPACE"
fi

# ---- S3: the root user and one identity per component (docs/security-cluster.md)
s3_env "$S3_ENV_FILE" sentiops
apply_secret "$NAMESPACE" sentiops-s3-root --from-env-file="$S3_ENV_FILE"
for id in predictor drift mlflow pipeline; do
  s3_env "$SENTIOPS_CONFIG_DIR/s3-$id.env" "$id"
done
# the predictor's is also KServe's storage-initializer's: it reads the endpoint from annotations
"$KUBECTL" -n "$NAMESPACE" create secret generic sentiops-s3-predictor \
  --from-env-file="$SENTIOPS_CONFIG_DIR/s3-predictor.env" --dry-run=client -o yaml \
  | "$KUBECTL" annotate --local -f - -o yaml \
      serving.kserve.io/s3-endpoint="$S3_ENDPOINT" \
      serving.kserve.io/s3-usehttps="$S3_USE_HTTPS" \
      serving.kserve.io/s3-region="$S3_REGION" \
  | "$KUBECTL" apply -f - >/dev/null
echo "Secret sentiops-s3-predictor in $NAMESPACE: applied"
apply_secret "$NAMESPACE" sentiops-s3-drift --from-env-file="$SENTIOPS_CONFIG_DIR/s3-drift.env"
apply_secret "$NAMESPACE" sentiops-s3-mlflow --from-env-file="$SENTIOPS_CONFIG_DIR/s3-mlflow.env"
if [ "$LABELLING" = 1 ]; then
  s3_env "$SENTIOPS_CONFIG_DIR/s3-labelling.env" labelling
  apply_secret "$NAMESPACE" sentiops-s3-labelling \
    --from-env-file="$SENTIOPS_CONFIG_DIR/s3-labelling.env"
fi
for ns in "$NAMESPACE" $kfp_ns; do
  apply_secret "$ns" sentiops-s3 --from-env-file="$SENTIOPS_CONFIG_DIR/s3-pipeline.env"
done

# The other Secrets are created only when missing, from their file; a file is generated only
# when it is needed (so it always holds what the Secret it made holds).
# ---- who may POST labels (:feedback): one random token
tokens="$SENTIOPS_CONFIG_DIR/annotator-tokens.env"
if has_secret "$NAMESPACE" sentiops-annotator-tokens; then
  echo "Secret sentiops-annotator-tokens in $NAMESPACE exists: left as it is"
else
  if [ ! -f "$tokens" ]; then
    echo "$ANNOTATOR_TEAM=$(hex 24)" > "$tokens"
    echo "generated the annotator token of $ANNOTATOR_TEAM in $tokens"
  fi
  "$KUBECTL" -n "$NAMESPACE" create secret generic sentiops-annotator-tokens \
    --from-env-file="$tokens" >/dev/null
  echo "Secret sentiops-annotator-tokens in $NAMESPACE: created from $tokens"
fi

# ---- the evaluation-sample key
sample="$SENTIOPS_CONFIG_DIR/eval-sample.env"
if has_secret "$NAMESPACE" sentiops-eval-sample; then
  echo "Secret sentiops-eval-sample in $NAMESPACE exists: left as it is"
else
  if [ ! -f "$sample" ]; then
    echo "key=$(hex 32)" > "$sample"
    echo "generated the evaluation-sample key in $sample"
  fi
  "$KUBECTL" -n "$NAMESPACE" create secret generic sentiops-eval-sample \
    --from-env-file="$sample" >/dev/null
  echo "Secret sentiops-eval-sample in $NAMESPACE: created from $sample"
fi

# ---- model signing: Ed25519 (the private key is the pipeline's, only verify.pub is mounted)
signing="$SENTIOPS_CONFIG_DIR/model-signing"
for ns in "$NAMESPACE" $kfp_ns; do
  if has_secret "$ns" sentiops-model-signing; then
    echo "Secret sentiops-model-signing in $ns exists: left as it is"
    continue
  fi
  if [ ! -f "$signing/signing.key" ]; then
    if [ "$ns" != "$NAMESPACE" ]; then  # the serving namespace's pair, which the file is not
      echo "Secret sentiops-model-signing in $ns: not created ($signing/signing.key is" \
        "missing; copy the Secret from $NAMESPACE)" >&2
      continue
    fi
    mkdir -p "$signing"
    "$OPENSSL" genpkey -algorithm ed25519 -out "$signing/signing.key"
    "$OPENSSL" pkey -in "$signing/signing.key" -pubout -out "$signing/verify.pub"
    echo "generated the model-signing key pair in $signing"
  fi
  "$KUBECTL" -n "$ns" create secret generic sentiops-model-signing \
    --from-file=signing.key="$signing/signing.key" \
    --from-file=verify.pub="$signing/verify.pub" >/dev/null
  echo "Secret sentiops-model-signing in $ns: created from $signing"
done

# ---- labelling (LABELLING=1): created only when missing, never replaced (a new admin token
# would lock the receiver out until restarted, a new database password would not match the
# database initialised with the old one)
# <secret> <file> <key>=<length in bytes, hex> ...: create the Secret from its file (made once)
new_secret() {
  local name="$1" file="$2"
  shift 2
  if has_secret "$NAMESPACE" "$name"; then
    echo "Secret $name in $NAMESPACE exists: left as it is"
    return
  fi
  if [ ! -f "$file" ]; then
    local kv
    for kv in "$@"; do echo "${kv%%=*}=$(hex "${kv#*=}")"; done > "$file"
    echo "generated $name in $file"
  fi
  "$KUBECTL" -n "$NAMESPACE" create secret generic "$name" --from-env-file="$file" >/dev/null
  echo "Secret $name in $NAMESPACE: created from $file"
}
if [ "$LABELLING" = 1 ]; then
  new_secret sentiops-labelling-webhook "$SENTIOPS_CONFIG_DIR/labelling-webhook.env" secret=32
  # the admin's API token: 40 characters (Label Studio's token length)
  new_secret sentiops-labelstudio "$SENTIOPS_CONFIG_DIR/labelstudio.env" password=24 token=20
  new_secret sentiops-labelstudio-postgresql "$SENTIOPS_CONFIG_DIR/labelstudio-postgresql.env" \
    password=24
  # the receiver's own feedback token: key "labelstudio" of the annotator token Secret (the
  # predictor reads every key; the receiver mounts only this one), added when missing
  if "$KUBECTL" -n "$NAMESPACE" get secret sentiops-annotator-tokens \
      -o jsonpath='{.data.labelstudio}' | grep -q .; then
    echo "key labelstudio of Secret sentiops-annotator-tokens in $NAMESPACE exists: left as it is"
  else
    receiver="$SENTIOPS_CONFIG_DIR/labelstudio-token.env"
    if [ ! -f "$receiver" ]; then
      echo "labelstudio=$(hex 24)" > "$receiver"
      echo "generated the labelling receiver's feedback token in $receiver"
    fi
    # the token through a file (mode 600), never on a command line
    patch="$SENTIOPS_CONFIG_DIR/.labelstudio-token.patch.json"
    printf '{"stringData":{"labelstudio":"%s"}}\n' "$(cut -d= -f2- "$receiver")" > "$patch"
    "$KUBECTL" -n "$NAMESPACE" patch secret sentiops-annotator-tokens --type merge \
      --patch-file="$patch" >/dev/null
    rm -f "$patch"
    echo "Secret sentiops-annotator-tokens in $NAMESPACE: key labelstudio added from $receiver"
  fi
fi
