"""Shadow rollout executor for KServe: the candidate as a second InferenceService that gets a
mirrored copy of live predictions at the Gateway API, never answering a client.

KServe 0.20 has no shadow or mirror of its own (InferenceGraph routers are Sequence, Switch,
Ensemble and Splitter: each puts the graph router in the client's path, and an Ensemble returns
every model's answer), and Knative Serving cannot mirror. In Standard (RawDeployment) mode with
`ingress.enableGatewayApi`, KServe routes each InferenceService through an HTTPRoute of its own
(named like the InferenceService) attached to its gateway; the Gateway API's `RequestMirror`
filter with `percent` (standard channel since v1.3; KServe 0.20 builds on v1.5.1) copies a share
of a rule's requests to another backend and ignores its answers. So:

    start(p)       create the InferenceService `<name>-shadow`: the serving predictor's spec
                   with the candidate's model (STORAGE_URI, SENTIOPS_MODEL_VERSION, version
                   label), SENTIOPS_SHADOW=true (`python -m serving --shadow`), no inference
                   logger, only the model container; wait until it is ready. Then the HTTPRoute
                   `<name>-shadow`: KServe's own rule for the InferenceService (its parents,
                   hostnames, backend = the stable predictor, filters, timeouts) for the two
                   prediction paths only (`Exact`: /v1/models/<name>:predict and
                   /v2/models/<name>/infer), plus a RequestMirror filter with `percent: p` to
                   the shadow's predictor Service; wait until the gateway accepted it
    set_traffic(p) patch the mirror's percent
    promote()      delete the mirror route (requests take KServe's route alone again), roll
                   the serving InferenceService to the candidate (`KServeExecutor`: new model,
                   ready, annotation dropped), delete the shadow InferenceService
    rollback()     delete the mirror route, then the shadow InferenceService (and undo a
                   promotion that stopped half-way)

Why these choices: an `Exact` path match outranks KServe's `^/.*$` rule for the same hostnames
(the Gateway API's match precedence), so only predictions are copied — labels (`:feedback`),
explanations and metadata keep going to stable alone; the mirrored request carries the
client's `x-request-id`, which is how a label given for stable's answer reaches the shadow's
(`sentiops.feedback.shadow`). Knative mode is refused: Envoy-based gateways append `-shadow`
to the Host of a mirrored request, and Knative routes by Host.

Least privilege for the pipeline's ServiceAccount (tests/cluster/test_shadow_kserve.py):
besides the canary's rules, get/create/patch on httproutes, and delete on the two objects it
creates only (`resourceNames: [<name>-shadow]` for inferenceservices and httproutes).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from sentiops.errors import RolloutError
from sentiops.rollout.kserve import (
    API_VERSION,
    CONTAINER,
    GROUP,
    PLURAL,
    PREVIOUS_ANNOTATION,
    KServeExecutor,
    served_version,
    with_model,
)

GATEWAY_GROUP, GATEWAY_VERSION, ROUTES = "gateway.networking.k8s.io", "v1", "httproutes"
SUFFIX = "-shadow"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
ROLE_LABEL = "sentiops.io/rollout"
SHADOW_ENV = "SENTIOPS_SHADOW"
#: Labels of the serving InferenceService a shadow does not inherit (it is not the chart's).
NOT_INHERITED = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance")


def shadow_name(name: str) -> str:
    return f"{name}{SUFFIX}"


def predictor_service(isvc_name: str, predictor: dict[str, Any]) -> str:
    """The Service KServe's Standard mode puts in front of the predictor."""
    named = predictor.get("name")
    return f"{isvc_name}-{named}-predictor" if named else f"{isvc_name}-predictor"


def shadow_isvc(main: dict[str, Any], storage_uri: str, version: str) -> dict[str, Any]:
    """The shadow InferenceService: the serving one's predictor with the candidate's model."""
    name, namespace = main["metadata"]["name"], main["metadata"]["namespace"]
    predictor = with_model(main["spec"]["predictor"], storage_uri, version)
    for key in ("canaryTrafficPercent", "logger"):
        predictor.pop(key, None)
    model = next(c for c in predictor["containers"] if c.get("name") == CONTAINER)
    env = [e for e in model.get("env", []) if e.get("name") != SHADOW_ENV]
    model["env"] = [*env, {"name": SHADOW_ENV, "value": "true"}]
    predictor["containers"] = [model]  # no drift sidecar: a shadow writes no inference log
    labels = {
        k: v for k, v in (main["metadata"].get("labels") or {}).items() if k not in NOT_INHERITED
    }
    annotations = main["metadata"].get("annotations") or {}
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": shadow_name(name),
            "namespace": namespace,
            "labels": {**labels, ROLE_LABEL: "shadow", "app.kubernetes.io/component": "shadow"},
            "annotations": {k: v for k, v in annotations.items() if k == DEPLOYMENT_MODE},
        },
        "spec": {"predictor": predictor},
    }


def _prediction_paths(model_name: str) -> list[dict[str, Any]]:
    return [
        {"path": {"type": "Exact", "value": f"/v1/models/{model_name}:predict"}},
        {"path": {"type": "Exact", "value": f"/v2/models/{model_name}/infer"}},
    ]


def _serving_rule(route: dict[str, Any]) -> dict[str, Any]:
    """KServe's rule that sends REST requests to the predictor: the one matching every path
    (`^/.*$`, or a `/` prefix) without header matches (a gRPC rule has them)."""
    for rule in route["spec"].get("rules", []):
        for match in rule.get("matches") or [{}]:
            path = match.get("path") or {"type": "PathPrefix", "value": "/"}
            if not match.get("headers") and path.get("value") in ("^/.*$", "/"):
                return dict(rule)
    raise RolloutError(
        f"HTTPRoute {route['metadata']['namespace']}/{route['metadata']['name']} has no rule "
        "for every path (KServe's '^/.*$')",
        "the shadow mirror copies KServe's own rule for the InferenceService",
    )


def mirror_route(
    kserve_route: dict[str, Any],
    name: str,
    model_name: str,
    shadow_service: str,
    percent: int,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The HTTPRoute `name` that copies `percent` % of the predictions KServe's route
    (`kserve_route`) sends to stable to `shadow_service`, for the same gateway and hosts."""
    meta = kserve_route["metadata"]
    rule = _serving_rule(kserve_route)
    (stable,) = rule.get("backendRefs") or [{}]
    if not stable.get("name"):
        raise RolloutError(
            f"HTTPRoute {meta['namespace']}/{meta['name']} has no backend",
            "the InferenceService is not ready yet",
        )
    filters = [f for f in rule.get("filters", []) if f.get("type") != "RequestMirror"]
    shadow_ref = {"kind": "Service", "name": shadow_service, "port": stable.get("port", 80)}
    if stable.get("namespace"):
        shadow_ref["namespace"] = stable["namespace"]
    mirror = {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": shadow_ref, "percent": int(percent)},
    }
    out_rule: dict[str, Any] = {
        "matches": _prediction_paths(model_name),
        "filters": [*filters, mirror],
        "backendRefs": [copy.deepcopy(stable)],
    }
    if rule.get("timeouts"):
        out_rule["timeouts"] = copy.deepcopy(rule["timeouts"])
    spec: dict[str, Any] = {
        "parentRefs": copy.deepcopy(kserve_route["spec"]["parentRefs"]),
        "rules": [out_rule],
    }
    if kserve_route["spec"].get("hostnames"):
        spec["hostnames"] = list(kserve_route["spec"]["hostnames"])
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {ROLE_LABEL: "shadow", **(labels or {})},
        },
        "spec": spec,
    }


def route_ready(route: dict[str, Any]) -> tuple[bool, str]:
    """Accepted by every parent, no condition False, for this generation (what KServe's own
    `isHTTPRouteReady` checks, plus the generation)."""
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        return False, "no gateway has reported on it yet"
    generation = route["metadata"].get("generation")
    for parent in parents:
        conditions = {c.get("type"): c for c in parent.get("conditions", [])}
        for c in conditions.values():
            if c.get("observedGeneration") not in (None, generation):
                return False, f"status not yet observed for generation {generation}"
            if c.get("status") == "False":
                return False, f"{c.get('type')}=False: {c.get('reason')}: {c.get('message', '')}"
        if conditions.get("Accepted", {}).get("status") != "True":
            return False, "not accepted by its gateway yet"
    return True, "ready"


class ShadowExecutor:
    """A shadow InferenceService and a mirror HTTPRoute next to the serving InferenceService."""

    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        storage_uri: str,
        model_version: str,
        *,
        model_name: str | None = None,
        ready_timeout: float = 600.0,
        poll_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name
        self.model_name = model_name or name
        self.storage_uri, self.version = storage_uri, model_version
        kw: dict[str, Any] = {
            "ready_timeout": ready_timeout,
            "poll_seconds": poll_seconds,
            "sleep": sleep,
        }
        self.main = KServeExecutor(api, namespace, name, storage_uri, model_version, **kw)
        self.shadow = KServeExecutor(
            api, namespace, shadow_name(name), storage_uri, model_version, **kw
        )
        self.ready_timeout, self.poll_seconds, self.sleep = ready_timeout, poll_seconds, sleep

    # -------------------------------------------------------------------------- API calls
    def _routes(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(GATEWAY_GROUP, GATEWAY_VERSION, self.namespace, ROUTES, *args)
        except ApiException as exc:
            if exc.status == 404 and what in ("get", "delete"):
                return None
            hint = (
                "the pipeline's ServiceAccount needs the shadow rollout's rules on httproutes "
                "(docs/pipeline.md)"
                if exc.status == 403
                else "check the Gateway API CRDs and KServe's ingress (enableGatewayApi)"
            )
            name = args[0] if args and isinstance(args[0], str) else shadow_name(self.name)
            raise RolloutError(
                f"{what} HTTPRoute {self.namespace}/{name}: {exc.status} {exc.reason}", hint
            ) from exc

    def route(self, name: str | None = None) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._routes(
            "get", self.custom.get_namespaced_custom_object, name or shadow_name(self.name)
        )
        return found

    def _delete_shadow_isvc(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, API_VERSION, self.namespace, PLURAL, shadow_name(self.name)
            )
        except ApiException as exc:
            if exc.status != 404:
                raise RolloutError(
                    f"delete InferenceService {self.namespace}/{shadow_name(self.name)}: "
                    f"{exc.status} {exc.reason}",
                    "the pipeline's ServiceAccount needs delete on it (resourceNames)",
                ) from exc

    # -------------------------------------------------------------------------- Executor
    def start(self, traffic: int) -> None:
        main = self.main.get()
        if main is None:
            raise RolloutError(
                f"InferenceService {self.namespace}/{self.name} does not exist",
                "a shadow needs a serving model: the first deployment is a canary rollout",
            )
        mode = (main["metadata"].get("annotations") or {}).get(DEPLOYMENT_MODE, "")
        if mode in ("Knative", "Serverless"):
            raise RolloutError(
                f"InferenceService {self.namespace}/{self.name} runs in {mode} mode: a mirrored "
                "request reaches Knative with a '-shadow' Host it does not route",
                "use deploymentMode Standard with KServe's Gateway API ingress, or mode canary",
            )
        if PREVIOUS_ANNOTATION in (main["metadata"].get("annotations") or {}):
            raise RolloutError(
                f"a canary of InferenceService {self.namespace}/{self.name} is in progress",
                "finish or roll it back first (sentiops rollout rollback)",
            )
        kserve_route = self.route(self.name)
        if kserve_route is None:
            raise RolloutError(
                f"no HTTPRoute {self.namespace}/{self.name} (KServe's route for the "
                "InferenceService)",
                "the shadow mirror needs KServe's Gateway API ingress: inferenceservice-config "
                "ingress.enableGatewayApi true, deploymentMode Standard",
            )
        body = shadow_isvc(main, self.storage_uri, self.version)
        existing = self.shadow.get()
        if existing is not None:  # left over from a rollout that did not end: start afresh
            self._delete_shadow_isvc()
            self._wait(lambda: self.shadow.get() is None, "the old shadow to be deleted")
        self.shadow._call("create", self.custom.create_namespaced_custom_object, body)
        self.shadow.wait_ready()
        route = mirror_route(
            kserve_route,
            shadow_name(self.name),
            self.model_name,
            predictor_service(shadow_name(self.name), body["spec"]["predictor"]),
            traffic,
            {"sentiops.io/model-version": self.version},
        )
        if self.route() is None:
            self._routes("create", self.custom.create_namespaced_custom_object, route)
        else:
            self._routes(
                "patch",
                self.custom.patch_namespaced_custom_object,
                shadow_name(self.name),
                {"metadata": {"labels": route["metadata"]["labels"]}, "spec": route["spec"]},
            )
        self.wait_route()

    def set_traffic(self, traffic: int) -> None:
        route = self.route()
        if route is None:
            raise RolloutError(
                f"HTTPRoute {self.namespace}/{shadow_name(self.name)} is gone",
                "someone deleted the mirror: run the rollout again",
            )
        rule = route["spec"]["rules"][0]
        filters = [
            {**f, "requestMirror": {**f["requestMirror"], "percent": int(traffic)}}
            if f.get("type") == "RequestMirror"
            else f
            for f in rule["filters"]
        ]
        # a merge patch replaces lists whole: the rule goes back with only the percent changed
        self._routes(
            "patch",
            self.custom.patch_namespaced_custom_object,
            shadow_name(self.name),
            {"spec": {"rules": [{**rule, "filters": filters}]}},
        )
        self.wait_route()

    def promote(self) -> None:
        self._routes("delete", self.custom.delete_namespaced_custom_object, shadow_name(self.name))
        self.main.start(100)
        self.main.promote()
        self._delete_shadow_isvc()

    def rollback(self) -> None:
        self._routes("delete", self.custom.delete_namespaced_custom_object, shadow_name(self.name))
        main = self.main.get()
        if (
            main is not None
            and PREVIOUS_ANNOTATION in (main["metadata"].get("annotations") or {})
            and served_version(main) == self.version
        ):  # a promotion stopped half-way: the previous model back
            self.main.rollback()
        self._delete_shadow_isvc()

    def in_progress(self) -> tuple[str, int | None] | None:
        """(the shadow's model version, the share mirrored to it) while a shadow runs next to
        the InferenceService, else None (the share None: no mirror route, or not readable)."""
        shadow = self.shadow.get()
        if shadow is None:
            return None
        try:
            route = self.route()
        except RolloutError:
            route = None
        percent = None
        for rule in (route or {}).get("spec", {}).get("rules", []):
            for f in rule.get("filters", []):
                if f.get("type") == "RequestMirror":
                    percent = f["requestMirror"].get("percent")
        return served_version(shadow) or "", percent

    # -------------------------------------------------------------------------- readiness
    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if done():
                return
            self.sleep(self.poll_seconds)
        raise RolloutError(f"timed out after {self.ready_timeout:.0f}s waiting for {what}", "")

    def wait_route(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        why = "not read yet"
        while time.monotonic() < deadline:
            route = self.route()
            if route is not None:
                ok, why = route_ready(route)
                if ok:
                    return
            self.sleep(self.poll_seconds)
        raise RolloutError(
            f"HTTPRoute {self.namespace}/{shadow_name(self.name)} not ready after "
            f"{self.ready_timeout:.0f}s: {why}",
            "kubectl describe httproute; check the gateway's logs (a backend it cannot "
            "resolve sets ResolvedRefs=False)",
        )
