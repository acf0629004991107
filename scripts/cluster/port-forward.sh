#!/usr/bin/env bash
# Forward the UIs and APIs to localhost until Ctrl-C; all forwards stop together.
set -euo pipefail
NAMESPACE="${1:-sentiops}"
KUBECTL="${KUBECTL:-kubectl}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
fwd() { "$KUBECTL" -n "$1" port-forward "svc/$2" "$3" >/dev/null & pids+=($!); echo "  $4"; }
echo "forwarding (Ctrl-C stops):"
fwd kubeflow ml-pipeline-ui 8888:80 "KFP UI + API   http://localhost:8888"
fwd "$NAMESPACE" mlflow 5000:5000 "MLflow         http://localhost:5000"
fwd "$NAMESPACE" minio 9000:9000 "MinIO S3       http://localhost:9000"
fwd "$NAMESPACE" minio 9001:9001 "MinIO console  http://localhost:9001"
fwd monitoring kube-prometheus-stack-grafana 3000:80 "Grafana        http://localhost:3000"
fwd monitoring kube-prometheus-stack-prometheus 9090:9090 "Prometheus     http://localhost:9090"
fwd istio-system istio-ingressgateway 8080:80 \
  "Ingress        http://localhost:8080 (Host header: kubectl -n $NAMESPACE get isvc sentiment -o jsonpath='{.status.url}')"
wait
