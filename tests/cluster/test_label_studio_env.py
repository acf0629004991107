"""The chart's Label Studio settings against the real Label Studio 1.23.2 (`.venv-labelstudio`,
`make labelling-install`), on loopback: its container's command line and environment, as the
chart renders them (sqlite and a temporary data directory in place of the cluster's
PostgreSQL and PVC), start it; its admin's API token works; a webhook to the cluster's
Service network (10.0.0.0/8, webhookAllowedSubnets) is accepted while loopback, link-local
(cloud metadata) and the other private ranges stay refused; and it writes nothing into its
installation (the chart runs it with a read-only root filesystem: only its data directory and
HOME are writable)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sentiops.local.processes import Process, free_port, start_process, wait_http

from .conftest import helm_template
from .test_labelling_chart import IN_CHART, container

pytestmark = pytest.mark.integration


def executable() -> Path:
    from sentiops.labelling.studio import label_studio_executable

    exe = label_studio_executable()
    if exe is None:
        pytest.fail(
            "Label Studio is not installed (.venv-labelstudio): run `make labelling-install`",
            pytrace=False,
        )
    return exe


class Started:
    def __init__(self, url: str, token: str, process: Process, install: Path, marker: Path):
        self.url, self.token, self.process = url, token, process
        self.install, self.marker = install, marker

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=30
        )


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    exe = executable()
    install = exe.resolve().parents[1]  # the environment (bin/label-studio -> its root)
    work = tmp_path_factory.mktemp("label-studio")
    c = container(helm_template(*IN_CHART), "Deployment", "label-studio")
    token = secrets.token_hex(20)
    values = {"LABEL_STUDIO_PASSWORD": secrets.token_hex(12), "LABEL_STUDIO_USER_TOKEN": token}
    env: dict[str, str] = {}
    for e in c["env"]:
        if e["name"].startswith("POSTGRE_"):
            continue  # the cluster's database: sqlite here
        env[e["name"]] = values[e["name"]] if "valueFrom" in e else e["value"]
    data, home = work / "data", work / "home"
    home.mkdir()
    env |= {
        "DJANGO_DB": "sqlite",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "HOME": str(home),
        # as in the image, no git repository around its package: here it is inside this
        # repository's work tree, and its version module would write version_.py from
        # `git describe`
        "GIT_DIR": str(work / "no-git-here"),
    }
    port = free_port()
    args = [str(exe)]
    for a in c["args"]:
        if a.startswith("--data-dir="):
            a = f"--data-dir={data}"
        elif a.startswith("--port="):
            a = f"--port={port}"
        elif a.startswith("--internal-host="):
            a = "--internal-host=127.0.0.1"
        args.append(a)
    assert c["command"] == ["label-studio"]
    marker = work / "marker"
    marker.write_text("")
    time.sleep(1.1)  # mtimes after the marker's are the run's
    process = start_process("label-studio-chart-env", args, work, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", process, 300, "Label Studio ready")
        yield Started(url, token, process, install, marker)
    finally:
        process.stop()


def test_the_admins_token_works(studio: Started) -> None:
    with studio.api() as api:
        r = api.get("/api/current-user/whoami")
        assert r.status_code == 200, r.text
        assert r.json()["email"] == "admin@sentiops.local"


@pytest.mark.parametrize(
    ("url", "blocked_by"),
    [
        ("http://10.96.0.10:9082/webhook", None),  # the receiver's Service (kind's range)
        ("http://10.244.1.7:9082/webhook", None),  # in the allowed entry too
        ("http://127.0.0.1:9082/webhook", "127.0.0.0/8"),  # loopback
        ("http://169.254.169.254/latest/meta-data/", "169.254.0.0/16"),  # cloud metadata
        ("http://192.168.1.5/webhook", "192.168.0.0/16"),
        ("http://172.16.0.5/webhook", "172.16.0.0/12"),
        ("http://100.64.0.1/webhook", "100.64.0.0/10"),
    ],
)
def test_webhooks_reach_the_service_network_only(
    studio: Started, url: str, blocked_by: str | None
) -> None:
    with studio.api() as api:
        r = api.post("/api/projects", json={"title": f"ssrf {secrets.token_hex(3)}"})
        assert r.status_code == 201, r.text
        project = r.json()["id"]
        r = api.post(
            "/api/webhooks",
            json={
                "project": project,
                "url": url,
                "send_payload": True,
                "send_for_all_actions": False,
                "actions": ["ANNOTATION_CREATED"],
            },
        )
    if blocked_by is None:
        assert r.status_code == 201, r.text
    else:  # Label Studio's SsrfBlockedUrlError
        assert r.status_code == 403, r.text
        detail = r.json()["detail"]
        assert detail == f"URL resolves to a reserved network address (block: {blocked_by})"


def test_it_writes_nothing_into_its_installation(studio: Started) -> None:
    """Only its data directory and HOME: nothing new or changed in its environment (the image's
    root filesystem is read-only in the chart; PYTHONDONTWRITEBYTECODE from the chart)."""
    with studio.api() as api:
        assert api.get("/api/projects").status_code == 200
    changed = [
        p
        for p in studio.install.rglob("*")
        if p.is_file() and p.stat().st_mtime > studio.marker.stat().st_mtime
    ]
    assert not changed, changed[:10]
