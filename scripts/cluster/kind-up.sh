#!/usr/bin/env bash
# Install the platform SentiOps runs on into the current kube context (a fresh kind cluster
# from `make kind-up`): KServe in Knative mode with cert-manager, Istio and Knative Serving
# (KServe's own quick-install script for the release), Kubeflow Pipelines standalone, and
# kube-prometheus-stack (Prometheus operator + Grafana). Needs kubectl, helm, curl, internet.
# MinIO and MLflow are part of SentiOps itself (`make deploy`).
set -euo pipefail
KSERVE_VERSION="${KSERVE_VERSION:-v0.20.0}"
KFP_VERSION="${KFP_VERSION:-2.14.3}"
KUBE_PROMETHEUS_STACK_VERSION="${KUBE_PROMETHEUS_STACK_VERSION:-83.4.0}"
HELM="${HELM:-helm}"
KUBECTL="${KUBECTL:-kubectl}"

echo "==> KServe ${KSERVE_VERSION} (Knative mode) + cert-manager + Istio + Knative Serving"
curl -fsSL "https://raw.githubusercontent.com/kserve/kserve/${KSERVE_VERSION}/hack/setup/quick-install/kserve-knative-mode-full-install-helm.sh" \
  | bash

echo "==> Kubeflow Pipelines ${KFP_VERSION} (standalone)"
"$KUBECTL" apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=${KFP_VERSION}"
"$KUBECTL" wait --for condition=established --timeout=120s crd/applications.app.k8s.io
"$KUBECTL" apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=${KFP_VERSION}"

echo "==> kube-prometheus-stack ${KUBE_PROMETHEUS_STACK_VERSION}"
"$HELM" repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
# Select PodMonitors/PrometheusRules in every namespace without a release label, and let
# Grafana's sidecar load dashboards (label grafana_dashboard=1) from every namespace.
"$HELM" upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --namespace monitoring --create-namespace --version "${KUBE_PROMETHEUS_STACK_VERSION}" \
  --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
  --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
  --set grafana.sidecar.dashboards.enabled=true \
  --set grafana.sidecar.dashboards.searchNamespace=ALL \
  --wait --timeout 10m

echo "==> waiting for KFP"
"$KUBECTL" -n kubeflow wait --for=condition=Available deploy --all --timeout=900s
echo "platform ready: next \`make images deploy\`"
