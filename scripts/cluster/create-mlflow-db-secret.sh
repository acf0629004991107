#!/usr/bin/env bash
# Create the Secret $MLFLOW_DB_SECRET (default mlflow-postgresql; key "password") in
# $NAMESPACE for the chart's own PostgreSQL (mlflow.backend: postgresql): the database is
# initialised with this password and MLflow builds its URL from it. The password comes from
# $MLFLOW_DB_ENV_FILE (outside the repo); if that does not exist, a random one (hex: safe in a
# URL) is generated and kept there (mode 600). An existing Secret is left as it is: the data
# on the PVC keep the password they were initialised with (docs/mlflow-postgresql.md says
# how to change it). Nothing is written into the repository.
set -euo pipefail
NAMESPACE="${NAMESPACE:-sentiops}"
MLFLOW_DB_SECRET="${MLFLOW_DB_SECRET:-mlflow-postgresql}"
MLFLOW_DB_ENV_FILE="${MLFLOW_DB_ENV_FILE:-${XDG_CONFIG_HOME:-$HOME/.config}/sentiops/mlflow-db.env}"
KUBECTL="${KUBECTL:-kubectl}"

if "$KUBECTL" -n "$NAMESPACE" get secret "$MLFLOW_DB_SECRET" >/dev/null 2>&1; then
  echo "Secret $MLFLOW_DB_SECRET exists in $NAMESPACE: left as it is"
  exit 0
fi
if [ ! -f "$MLFLOW_DB_ENV_FILE" ]; then
  mkdir -p "$(dirname "$MLFLOW_DB_ENV_FILE")"
  umask 077
  echo "password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$MLFLOW_DB_ENV_FILE"
  echo "generated the MLflow database password in $MLFLOW_DB_ENV_FILE"
fi
grep -qE '^password=[A-Za-z0-9]+$' "$MLFLOW_DB_ENV_FILE" \
  || { echo "$MLFLOW_DB_ENV_FILE: needs one line password=<letters and digits>" >&2; exit 1; }

"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" -n "$NAMESPACE" create secret generic "$MLFLOW_DB_SECRET" \
  --from-env-file="$MLFLOW_DB_ENV_FILE"
