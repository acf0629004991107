#!/usr/bin/env bash
# Create or refresh the Secret sentiops-s3 (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) in
# $NAMESPACE, with the annotations KServe's storage-initializer reads for a MinIO endpoint.
# Credentials come from $S3_ENV_FILE (outside the repo); if it does not exist, random ones are
# generated and kept there (mode 600). Nothing is written into the repository.
set -euo pipefail
NAMESPACE="${NAMESPACE:-sentiops}"
S3_ENV_FILE="${S3_ENV_FILE:-${XDG_CONFIG_HOME:-$HOME/.config}/sentiops/s3.env}"
S3_ENDPOINT="${S3_ENDPOINT:-minio.${NAMESPACE}.svc.cluster.local:9000}"
S3_USE_HTTPS="${S3_USE_HTTPS:-0}"
S3_REGION="${S3_REGION:-us-east-1}"
KUBECTL="${KUBECTL:-kubectl}"

if [ ! -f "$S3_ENV_FILE" ]; then
  mkdir -p "$(dirname "$S3_ENV_FILE")"
  umask 077
  {
    echo "AWS_ACCESS_KEY_ID=sentiops-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "AWS_SECRET_ACCESS_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  } > "$S3_ENV_FILE"
  echo "generated S3 credentials in $S3_ENV_FILE"
fi

"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$KUBECTL" -n "$NAMESPACE" create secret generic sentiops-s3 --from-env-file="$S3_ENV_FILE" \
  --dry-run=client -o yaml \
  | "$KUBECTL" annotate --local -f - -o yaml \
      serving.kserve.io/s3-endpoint="$S3_ENDPOINT" \
      serving.kserve.io/s3-usehttps="$S3_USE_HTTPS" \
      serving.kserve.io/s3-region="$S3_REGION" \
  | "$KUBECTL" apply -f -
