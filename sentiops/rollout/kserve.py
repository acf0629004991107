"""Rollout executor for a KServe InferenceService (the `kubernetes` client).

    start(p)       first deploy: create the InferenceService at 100 % (from a template); later:
                   patch the predictor to the new model (env STORAGE_URI and
                   SENTIOPS_MODEL_VERSION, label sentiops.io/model-version) with
                   canaryTrafficPercent p, keeping the previous predictor spec in an annotation;
                   wait until the new revision is ready
    set_traffic(p) patch canaryTrafficPercent
    promote()      drop canaryTrafficPercent: the new revision takes 100 %
    rollback()     canaryTrafficPercent 0 (traffic back to the previous revision at once), then
                   restore the previous predictor spec exactly

A person in the loop (`AnnotationGate`, `sentiops.rollout.approval`): when the plan waits for
approval the rollout sets the InferenceService's annotation `sentiops.io/rollout-approval` to
`pending` (and `sentiops.io/rollout-approval-request` to what waits, as JSON) and polls it until
someone sets it to `approve` or `reject` (`sentiops rollout approve|reject --namespace NS`, or
`kubectl annotate isvc <name> sentiops.io/rollout-approval=approve --overwrite`); then it removes
both. The pipeline's Role already has patch on inferenceservices; people need patch too.

Ready means: condition Ready=True, the status observed this generation, and (Knative) the
predictor's latestCreatedRevision equals its latestReadyRevision. Least privilege: get / create
/ patch on inferenceservices and get on the rollout ConfigMap — what the chart's Role grants
the pipeline's ServiceAccount (tests/cluster/test_rollout_kserve.py runs as it).

Deployment modes: canaryTrafficPercent is implemented by KServe's Knative (Serverless) mode;
KServe 0.20 added canary traffic for RawDeployment mode as well. The same patches apply; in
RawDeployment mode the status has no Knative revisions, so readiness is the Ready condition of
the observed generation.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentiops.config import MODEL_NAME
from sentiops.errors import RolloutError
from sentiops.rollout.approval import ANSWERS, PENDING, Approval
from sentiops.rollout.judge import JudgeConfig

GROUP, API_VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
VERSION_LABEL = "sentiops.io/model-version"
PREVIOUS_ANNOTATION = "sentiops.io/previous-predictor"
APPROVAL_ANNOTATION = "sentiops.io/rollout-approval"
REQUEST_ANNOTATION = "sentiops.io/rollout-approval-request"
CONTAINER = "kserve-container"
CONFIGMAP = "sentiops-rollout"


@dataclass
class RolloutSettings:
    """The `sentiops-rollout` ConfigMap the chart renders (string values)."""

    inference_service: str = MODEL_NAME
    steps: list[int] = field(default_factory=lambda: [10, 50, 100])
    step_seconds: float = 600.0
    model_uri_template: str = ""
    prometheus_url: str = ""
    max_holds: int = 2
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    mode: str = "canary"  # canary | shadow (sentiops.rollout.steps, sentiops.rollout.shadow)
    approval: Approval = field(default_factory=Approval)
    notify: list[str] = field(default_factory=list)  # FORMAT=URL (sentiops.rollout.notify)
    record_url: str = ""  # the record's link in notifications; {run_id}, {version} filled in
    source: dict[str, str] = field(default_factory=dict)  # the ConfigMap's data as read

    @classmethod
    def from_configmap(cls, data: dict[str, str]) -> RolloutSettings:
        try:
            return cls(
                inference_service=data.get("inferenceService", MODEL_NAME),
                steps=[int(s) for s in data.get("canarySteps", "10,50,100").split(",") if s],
                step_seconds=float(data.get("stepIntervalSeconds", 600)),
                model_uri_template=data.get("modelUriTemplate", ""),
                prometheus_url=data.get("prometheusUrl", ""),
                max_holds=int(data.get("maxHolds", 2)),
                judge=JudgeConfig.from_strings(data),
                mode=data.get("rolloutMode", "canary") or "canary",
                approval=Approval(
                    before=data.get("approveBefore", ""),
                    timeout_seconds=float(data.get("approvalTimeoutSeconds", 3600)),
                    on_timeout=data.get("approvalTimeoutPolicy", "reject") or "reject",
                    poll_seconds=float(data.get("approvalPollSeconds", 5)),
                ),
                notify=[t for t in data.get("notify", "").split(",") if t.strip()],
                record_url=data.get("recordUrl", ""),
                source=dict(data),
            )
        except (TypeError, ValueError) as exc:
            raise RolloutError(
                f"the {CONFIGMAP} ConfigMap has a bad value: {exc}",
                "fix it in the chart values (inferenceService.canary.*) and upgrade",
            ) from exc

    def model_uri(self, version: str) -> str:
        if "{version}" not in self.model_uri_template:
            raise RolloutError(
                f"modelUriTemplate {self.model_uri_template!r} has no {{version}}",
                "the chart renders s3://<bucket>/models/<name>/{version}/",
            )
        return self.model_uri_template.replace("{version}", version)


def api_client(kubeconfig: str | None = None) -> Any:
    """In the cluster: the pod's ServiceAccount; elsewhere: the kubeconfig (or $KUBECONFIG)."""
    from kubernetes import client, config

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig)


def load_settings(api: Any, namespace: str, name: str = CONFIGMAP) -> RolloutSettings:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        cm = client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        raise RolloutError(
            f"cannot read ConfigMap {namespace}/{name}: {exc.status} {exc.reason}",
            "install the chart (it renders the ConfigMap) or pass the settings explicitly",
        ) from exc
    return RolloutSettings.from_configmap(dict(cm.data or {}))


def _container(predictor: dict[str, Any]) -> dict[str, Any]:
    for c in predictor.get("containers", []):
        if c.get("name") == CONTAINER:
            return dict(c)
    raise RolloutError(
        f"the predictor has no container named {CONTAINER}",
        "SentiOps' InferenceService (helm/sentiops) runs the predictor as kserve-container",
    )


def with_model(predictor: dict[str, Any], storage_uri: str, version: str) -> dict[str, Any]:
    """The predictor spec serving another model version (nothing else changes)."""
    out = copy.deepcopy(predictor)
    container = _container(out)
    ours = {"STORAGE_URI": storage_uri, "SENTIOPS_MODEL_VERSION": version}
    env = [e for e in container.get("env", []) if e["name"] not in ours]
    env = [{"name": k, "value": v} for k, v in ours.items()] + env
    container["env"] = env
    out["containers"] = [container if c.get("name") == CONTAINER else c for c in out["containers"]]
    out["labels"] = {**out.get("labels", {}), VERSION_LABEL: version}
    return out


def served_version(isvc: dict[str, Any]) -> str | None:
    return (isvc["spec"]["predictor"].get("labels") or {}).get(VERSION_LABEL)


def merge_patch_to(current: Any, target: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `current` into `target`."""
    if not isinstance(current, dict) or not isinstance(target, dict):
        return target
    patch: dict[str, Any] = {k: None for k in current if k not in target}
    for key, value in target.items():
        if key not in current:
            patch[key] = value
        elif current[key] != value:
            patch[key] = merge_patch_to(current[key], value)
    return patch


class KServeExecutor:
    """Moves traffic of one InferenceService between its stable and canary revisions."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        storage_uri: str,
        model_version: str,
        *,
        template: dict[str, Any] | None = None,
        ready_timeout: float = 600.0,
        poll_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name
        self.storage_uri, self.version = storage_uri, model_version
        self.template = template
        self.ready_timeout, self.poll_seconds, self.sleep = ready_timeout, poll_seconds, sleep

    # -------------------------------------------------------------------------- API calls
    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(GROUP, API_VERSION, self.namespace, PLURAL, *args)
        except ApiException as exc:
            if exc.status == 404 and what == "get":
                return None
            hint = (
                "the pipeline's ServiceAccount needs the chart's Role sentiops-pipeline"
                if exc.status == 403
                else "check the InferenceService and the KServe controller"
            )
            raise RolloutError(
                f"{what} InferenceService {self.namespace}/{self.name}: {exc.status} {exc.reason}",
                hint,
            ) from exc

    def get(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._call(
            "get", self.custom.get_namespaced_custom_object, self.name
        )
        return found

    def _patch(self, body: dict[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self._call(
            "patch", self.custom.patch_namespaced_custom_object, self.name, body
        )
        return patched

    # -------------------------------------------------------------------------- Executor
    def start(self, traffic: int) -> None:
        isvc = self.get()
        if isvc is None:
            if self.template is None:
                raise RolloutError(
                    f"InferenceService {self.namespace}/{self.name} does not exist",
                    "install the chart first, or give the rollout a template to create it",
                )
            body = copy.deepcopy(self.template)
            body.setdefault("metadata", {}).update(name=self.name, namespace=self.namespace)
            body["spec"]["predictor"] = with_model(
                body["spec"]["predictor"], self.storage_uri, self.version
            )
            body["spec"]["predictor"].pop("canaryTrafficPercent", None)
            self._call("create", self.custom.create_namespaced_custom_object, body)
            self.wait_ready()
            return
        previous = isvc["spec"]["predictor"]
        target = with_model(previous, self.storage_uri, self.version)
        if traffic < 100:
            target["canaryTrafficPercent"] = traffic
        else:
            target.pop("canaryTrafficPercent", None)
        self._patch(
            {
                "metadata": {"annotations": {PREVIOUS_ANNOTATION: json.dumps(previous)}},
                "spec": {"predictor": merge_patch_to(previous, target)},
            }
        )
        self.wait_ready()

    def set_traffic(self, traffic: int) -> None:
        self._patch({"spec": {"predictor": {"canaryTrafficPercent": traffic}}})
        self.wait_ready()

    def promote(self) -> None:
        self._patch(
            {
                "metadata": {"annotations": {PREVIOUS_ANNOTATION: None}},
                "spec": {"predictor": {"canaryTrafficPercent": None}},
            }
        )
        self.wait_ready()

    def rollback(self) -> None:
        isvc = self.get()
        if isvc is None:
            return
        raw = (isvc["metadata"].get("annotations") or {}).get(PREVIOUS_ANNOTATION)
        # traffic first: every request goes back to the previous revision at once
        self._patch({"spec": {"predictor": {"canaryTrafficPercent": 0}}})
        self.wait_ready()
        if raw:
            current = self.get() or isvc
            previous = json.loads(raw)
            self._patch(
                {
                    "metadata": {"annotations": {PREVIOUS_ANNOTATION: None}},
                    "spec": {"predictor": merge_patch_to(current["spec"]["predictor"], previous)},
                }
            )
        self.wait_ready()

    # -------------------------------------------------------------------------- readiness
    def ready(self, isvc: dict[str, Any]) -> tuple[bool, str]:
        status = isvc.get("status") or {}
        generation = isvc["metadata"].get("generation")
        if status.get("observedGeneration") != generation:
            return False, f"status not yet observed for generation {generation}"
        conditions = {c.get("type"): c for c in status.get("conditions", [])}
        ready = conditions.get("Ready", {})
        if ready.get("status") != "True":
            return False, f"Ready={ready.get('status')}: {ready.get('message', '')}".strip()
        predictor = (status.get("components") or {}).get("predictor") or {}
        created, done = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
        if created and created != done:
            return False, f"revision {created} not ready yet (ready: {done})"
        return True, "ready"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        why = "not read yet"
        while time.monotonic() < deadline:
            isvc = self.get()
            if isvc is not None:
                ok, why = self.ready(isvc)
                if ok:
                    return
            self.sleep(self.poll_seconds)
        raise RolloutError(
            f"InferenceService {self.namespace}/{self.name} not ready after "
            f"{self.ready_timeout:.0f}s: {why}",
            "kubectl describe isvc; check the predictor pod's logs (a model whose checksums "
            "fail never becomes ready)",
        )


class AnnotationGate:
    """The cluster's approval gate: annotations on the serving InferenceService (`executor`'s;
    for a shadow rollout, the serving one, not `<name>-shadow`)."""

    def __init__(self, executor: KServeExecutor) -> None:
        self.executor = executor
        self.how = (
            f"sentiops rollout approve|reject --namespace {executor.namespace} (or kubectl "
            f"annotate isvc {executor.name} -n {executor.namespace} "
            f"{APPROVAL_ANNOTATION}=approve --overwrite)"
        )

    def ask(self, request: dict[str, Any]) -> None:
        self.executor._patch(
            {
                "metadata": {
                    "annotations": {
                        APPROVAL_ANNOTATION: PENDING,
                        REQUEST_ANNOTATION: json.dumps(request),
                    }
                }
            }
        )

    def answer(self) -> str | None:
        isvc = self.executor.get() or {"metadata": {}}
        value = (isvc["metadata"].get("annotations") or {}).get(APPROVAL_ANNOTATION, "")
        return value.strip().lower() if value.strip().lower() in ANSWERS else None

    def close(self) -> None:
        self.executor._patch(
            {"metadata": {"annotations": {APPROVAL_ANNOTATION: None, REQUEST_ANNOTATION: None}}}
        )


def waiting_request(isvc: dict[str, Any]) -> dict[str, Any] | None:
    """The approval request a rollout waits on, from the InferenceService's annotations."""
    notes = isvc["metadata"].get("annotations") or {}
    if notes.get(APPROVAL_ANNOTATION) != PENDING:
        return None
    try:
        found = json.loads(notes.get(REQUEST_ANNOTATION) or "{}")
    except ValueError:
        found = {}
    return found if isinstance(found, dict) else {}


def answer_annotation(executor: KServeExecutor, answer: str) -> dict[str, Any]:
    """Answer the rollout waiting on `executor`'s InferenceService (`sentiops rollout
    approve|reject --namespace`); returns the request answered."""
    if answer not in ANSWERS:
        raise RolloutError(f"answer {answer!r} is not one of {ANSWERS}", "approve or reject")
    isvc = executor.get()
    request = waiting_request(isvc) if isvc else None
    if request is None:
        raise RolloutError(
            f"no rollout waits for approval on InferenceService {executor.namespace}/"
            f"{executor.name}",
            "sentiops rollout status --namespace shows what is in progress",
        )
    executor._patch({"metadata": {"annotations": {APPROVAL_ANNOTATION: answer}}})
    return request
