# Cluster packaging: tools for the verification stage, and the kind / cloud workflow.
# Included by the main Makefile (`-include mk/*.mk`), which defines BIN, VENV and PYTHON.
#
#   make cluster-tools   install promtool, etcd, helm, kube-apiserver (cached outside the repo)
#   make verify-cluster  kustomize/helm/schema/promtool checks + a real kube-apiserver
#   make manifests       regenerate manifests/base/generated and the chart's dashboard copy
#   make kind-up images deploy pipeline-submit port-forward    (need Docker + kind; not in CI)
#   make images-push IMAGE_PREFIX=REGISTRY/sentiops IMAGE_TAG=0.1.0   (cloud clusters)

SENTIOPS_TOOLS_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sentiops-tools
export SENTIOPS_TOOLS_DIR
TOOLS_BIN := $(SENTIOPS_TOOLS_DIR)/bin
HELM := $(TOOLS_BIN)/helm
KUBECTL ?= kubectl
KIND ?= kind
DOCKER ?= docker
KIND_CLUSTER ?= sentiops
KIND_NODE_IMAGE ?=
NAMESPACE ?= sentiops
OVERLAY ?= kind
IMAGE_TAG ?= dev
IMAGE_PREFIX ?= dev.local/sentiops
KSERVE_VERSION ?= v0.20.0
KFP_VERSION ?= 2.14.3
CERT_MANAGER_VERSION ?= v1.17.0
KUBE_PROMETHEUS_STACK_VERSION ?= 83.4.0
KFP_HOST ?= http://localhost:8888
SENTIOPS_CONFIG_DIR ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/sentiops
S3_ENV_FILE ?= $(SENTIOPS_CONFIG_DIR)/s3.env
KFP_NAMESPACE ?= kubeflow

.PHONY: cluster-tools verify-cluster manifests kind-up kind-down images images-build images-buildah \
	images-push deploy deploy-helm secrets pipeline-submit port-forward

cluster-tools: ## install promtool/etcd/helm/kube-apiserver for the cluster checks (cached, idempotent)
	@bash scripts/cluster/install-tools.sh

verify-cluster: install cluster-tools labelling-install ## kustomize, helm, schemas, promtool, real kube-apiserver + RBAC
	$(BIN)/pytest tests/cluster -q

manifests: install cluster-tools ## regenerate manifests/base/generated from the Helm chart
	$(BIN)/python scripts/cluster/render_manifests.py

# ---------------------------------------------------------------- needs Docker + kind
kind-up: ## kind cluster + cert-manager, Istio, Knative, KServe, KFP, kube-prometheus-stack
	$(KIND) create cluster --config kind-config.yaml --name $(KIND_CLUSTER) \
		$(if $(KIND_NODE_IMAGE),--image $(KIND_NODE_IMAGE))
	KSERVE_VERSION=$(KSERVE_VERSION) KFP_VERSION=$(KFP_VERSION) \
	CERT_MANAGER_VERSION=$(CERT_MANAGER_VERSION) \
	KUBE_PROMETHEUS_STACK_VERSION=$(KUBE_PROMETHEUS_STACK_VERSION) \
		bash scripts/cluster/kind-up.sh

kind-down: ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)

images-build: install ## build the serving, drift and components images with Docker (air-gapped wheelhouse)
	BUILDER=docker IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_TAG=$(IMAGE_TAG) bash scripts/images/build.sh

images-buildah: install cluster-tools ## the same without a daemon: buildah + an mmdebstrap base (what CI runs)
	BUILDER=buildah IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_TAG=$(IMAGE_TAG) bash scripts/images/build.sh

images: images-build ## build the images and load them into the kind cluster
	$(KIND) load docker-image --name $(KIND_CLUSTER) \
		$(IMAGE_PREFIX)/serving:$(IMAGE_TAG) $(IMAGE_PREFIX)/drift:$(IMAGE_TAG) \
		$(IMAGE_PREFIX)/components:$(IMAGE_TAG)

images-push: images-build ## build and push the images to a registry (cloud clusters)
	$(DOCKER) push $(IMAGE_PREFIX)/serving:$(IMAGE_TAG)
	$(DOCKER) push $(IMAGE_PREFIX)/drift:$(IMAGE_TAG)
	$(DOCKER) push $(IMAGE_PREFIX)/components:$(IMAGE_TAG)

secrets: ## the Secrets the chart names: S3 root + one identity per component, annotator token, eval-sample key, model-signing keys (random, kept in SENTIOPS_CONFIG_DIR)
	NAMESPACE=$(NAMESPACE) KFP_NAMESPACE=$(KFP_NAMESPACE) SENTIOPS_CONFIG_DIR=$(SENTIOPS_CONFIG_DIR) \
		S3_ENV_FILE=$(S3_ENV_FILE) bash scripts/cluster/create-secrets.sh

# The bucket Job (buckets, S3 users and policies) runs again on every deploy: a finished Job
# is never re-run by an apply, and the identities' credentials or policies may have changed.
deploy: secrets ## apply the kustomize overlay (OVERLAY=kind|cloud) server-side
	$(KUBECTL) -n $(NAMESPACE) delete job minio-create-buckets --ignore-not-found
	$(KUBECTL) apply --server-side --field-manager=sentiops -k manifests/overlays/$(OVERLAY)
	$(KUBECTL) -n $(NAMESPACE) rollout status deploy/minio deploy/mlflow --timeout=300s
	$(KUBECTL) -n $(NAMESPACE) wait --for=condition=Ready isvc/sentiment --timeout=600s

deploy-helm: secrets cluster-tools ## same with Helm (values: helm/sentiops/values.yaml)
	$(HELM) upgrade --install sentiops helm/sentiops -n $(NAMESPACE) --create-namespace \
		--set auth.existingSecret=sentiops-annotator-tokens \
		--set images.serving.repository=$(IMAGE_PREFIX)/serving \
		--set images.serving.tag=$(IMAGE_TAG) \
		--set images.drift.repository=$(IMAGE_PREFIX)/drift --set images.drift.tag=$(IMAGE_TAG) \
		--set images.components.repository=$(IMAGE_PREFIX)/components \
		--set images.components.tag=$(IMAGE_TAG) \
		--set 'pipeline.extraSubjects[0].kind=ServiceAccount' \
		--set 'pipeline.extraSubjects[0].name=pipeline-runner' \
		--set 'pipeline.extraSubjects[0].namespace=kubeflow'

pipeline-submit: install ## compile with this cluster's image and submit to KFP (`make port-forward` first)
	$(BIN)/sentiops pipeline submit --host $(KFP_HOST) --image $(IMAGE_PREFIX)/components:$(IMAGE_TAG)

port-forward: ## KFP UI/API :8888, MLflow :5000, MinIO :9000/:9001, Grafana :3000, Prometheus :9090, ingress :8080
	bash scripts/cluster/port-forward.sh $(NAMESPACE)
