"""Label Studio over its REST API (`Authorization: Token <key>`), and what its server needs on
one machine. SentiOps never imports Label Studio: it runs in its own environment
(`.venv-labelstudio`, `make labelling-install`) as its own process, and everything here talks
HTTP with httpx.

Every call is retried with exponential backoff while Label Studio is unreachable, times out or
answers 5xx/429 (it may be restarting, or busy migrating its database); after the last try it
raises `LabelStudioUnavailable` and the caller tries again later — nothing is lost, the texts
wait in the store. A 4xx is a mistake of ours (or a project changed by hand) and raises at
once with Label Studio's answer.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiops.errors import ConfigError, SentiOpsError
from sentiops.labelling.tasks import KINDS, choice, project_settings, project_title

#: The Label Studio executable of its own environment (set by mk/labelling.mk).
LABEL_STUDIO_ENV = "SENTIOPS_LABEL_STUDIO"
#: Label Studio's address and its API token file for the commands that talk to it.
URL_ENV, TOKEN_FILE_ENV = "SENTIOPS_LABEL_STUDIO_URL", "SENTIOPS_LABEL_STUDIO_TOKEN_FILE"
#: The annotation events the receiver is told about.
WEBHOOK_ACTIONS = (
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
)
#: Label Studio's default blocked networks for outgoing requests (webhooks) less the loopback
#: ones: on one machine its webhooks go to the receiver on 127.0.0.1, and only there.
BANNED_BUT_LOOPBACK = (
    "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,169.254.0.0/16,172.16.0.0/12,192.0.0.0/24,"
    "192.0.2.0/24,192.88.99.0/24,192.168.0.0/16,198.18.0.0/15,198.51.100.0/24,203.0.113.0/24,"
    "224.0.0.0/4,233.252.0.0/24,240.0.0.0/4,255.255.255.255/32,::/128,::ffff:0:0/96,::ffff:0:0:0/96,"
    "64:ff9b::/96,64:ff9b:1::/48,100::/64,2001:0000::/32,2001:20::/28,2001:db8::/32,"
    "2002::/16,fc00::/7,fe80::/10,ff00::/8"
)


class LabelStudioUnavailable(SentiOpsError):
    """Label Studio did not answer (down, restarting, too slow) after every retry."""

    exit_code = 15


class LabelStudioError(SentiOpsError):
    """Label Studio refused a request (4xx): its answer says why."""

    exit_code = 15


# ------------------------------------------------------------------------------ the server
def label_studio_executable() -> Path | None:
    """Label Studio's own `label-studio`: $SENTIOPS_LABEL_STUDIO, else the repository's
    `.venv-labelstudio`, else None (not installed: `make labelling-install`)."""
    env = os.environ.get(LABEL_STUDIO_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(
        Path(__file__).resolve().parents[2] / ".venv-labelstudio" / "bin" / "label-studio"
    )
    return next((c for c in candidates if c.exists()), None)


@dataclass(frozen=True)
class Admin:
    """The installation's Label Studio admin: an email, a password and an API token made once
    per installation (files of mode 0600 in `folder`), never printed in full."""

    folder: Path
    email: str = "admin@sentiops.local"

    @property
    def token_file(self) -> Path:
        return self.folder / "api-token"

    @property
    def password_file(self) -> Path:
        return self.folder / "admin-password"

    def ensure(self) -> Admin:
        """Make the password and the token when they do not exist yet."""
        for path in (self.token_file, self.password_file):
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(20) + "\n")
        return self

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()


def server_env(admin: Admin, data_dir: Path, webhook_timeout: float = 10.0) -> dict[str, str]:
    """Label Studio's environment on one machine: its sqlite database and media in
    `data_dir`, the admin and token made non-interactively, no update check, no error
    reporting or analytics sent anywhere, webhooks allowed to loopback only."""
    return {
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": admin.email,
        "LABEL_STUDIO_PASSWORD": admin.password,
        "LABEL_STUDIO_USER_TOKEN": admin.token,
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "USER_ADDITIONAL_BANNED_SUBNETS": BANNED_BUT_LOOPBACK,
        "WEBHOOK_TIMEOUT": str(webhook_timeout),
        "PYTHONUNBUFFERED": "1",
    }


def server_args(executable: Path, port: int, data_dir: Path) -> list[str]:
    """The command line of Label Studio on 127.0.0.1:`port` (its API token enabled)."""
    return [
        str(executable),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--enable-legacy-api-token",
        "--log-level",
        "WARNING",
    ]


# ------------------------------------------------------------------------------ the API
class Studio:
    """Label Studio's REST API at `url` with an API token; `tries` attempts per call, the
    waits between them doubling from `backoff` seconds."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 30.0,
        tries: int = 5,
        backoff: float = 0.5,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.tries, self.backoff, self.sleep = max(1, tries), backoff, sleep
        self.http = httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Token {token}"}
        )

    @classmethod
    def from_env(cls, url: str = "", token_file: str | Path | None = None, **kw: Any) -> Studio:
        """From `url`/`token_file` or $SENTIOPS_LABEL_STUDIO_URL/_TOKEN_FILE."""
        url = url or os.environ.get(URL_ENV, "")
        token_file = token_file or os.environ.get(TOKEN_FILE_ENV, "")
        if not url or not token_file:
            raise ConfigError(
                "Label Studio's URL and API token file are needed",
                f"pass --studio-url and --studio-token-file (or set {URL_ENV} and "
                f"{TOKEN_FILE_ENV}); on one machine `make up` writes the token to "
                "$SENTIOPS_HOME/labelstudio/api-token",
            )
        path = Path(token_file)
        if not path.is_file() or not path.read_text().strip():
            raise ConfigError(f"no API token in {path}", "the file holds the token alone")
        return cls(url, path.read_text().strip(), **kw)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """One request, retried with backoff while Label Studio is unreachable or 5xx/429;
        its JSON answer (None for an empty one)."""
        import httpx

        wait, last = self.backoff, ""
        for attempt in range(self.tries):
            try:
                r = self.http.request(method, path, **kw)
            except httpx.HTTPError as exc:  # refused, reset, timed out: it may be restarting
                last = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code < 400:
                    return r.json() if r.content else None
                if r.status_code < 500 and r.status_code != 429:
                    raise LabelStudioError(
                        f"Label Studio refused {method} {path}: {r.status_code} {r.text[:300]}",
                        "check the project in Label Studio (changed by hand?) and the token",
                    )
                last = f"{r.status_code} {r.text[:200]}"
            if attempt + 1 < self.tries:
                self.sleep(wait)
                wait *= 2
        raise LabelStudioUnavailable(
            f"Label Studio at {self.url} did not answer {method} {path} after {self.tries} "
            f"tries: {last}",
            "is it running? Nothing was lost: the texts wait in the store, run again later",
        )

    def healthy(self) -> bool:
        try:
            return self.http.get("/health", timeout=5).status_code == 200
        except Exception:  # noqa: BLE001 - any failure means not healthy
            return False

    # ---------------------------------------------------------------- projects and tasks
    def projects(self, model_name: str, overlap: int = 1) -> dict[str, int]:
        """kind -> project id of the model's two projects, created when missing (found by
        their titles). Should two receivers create one at the same time, both take the
        older of the two (the lowest id), so they agree."""
        titles = {project_title(model_name, kind): kind for kind in KINDS}
        found = self._project_ids(titles)
        for title, kind in titles.items():
            if title not in found:
                self.call("POST", "/api/projects", json=project_settings(model_name, kind, overlap))
        if len(found) < len(titles):
            found = self._project_ids(titles)
        return {kind: found[title] for title, kind in titles.items()}

    def _project_ids(self, titles: dict[str, str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for p in self._pages("/api/projects", "results", {"page_size": 100}):
            title, pid = str(p["title"]), int(p["id"])
            if title in titles:
                found[title] = min(pid, found.get(title, pid))
        return found

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> int:
        if not tasks:
            return 0
        answer = self.call("POST", f"/api/projects/{project}/import", json=tasks)
        return int(answer.get("task_count", len(tasks)))

    def task_count(self, project: int) -> int:
        return int(self.call("GET", f"/api/projects/{project}")["task_number"])

    def tasks(self, project: int, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every task of a project with its annotations."""
        params = {"project": project, "fields": "all", "page_size": page_size}
        yield from self._pages("/api/tasks", "tasks", params)

    def task(self, task_id: int) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/tasks/{task_id}"))

    def _pages(
        self, path: str, key: str, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list (its `next`, else its `total`, says where it ends)."""
        page, seen = 1, 0
        while True:
            body = self.call("GET", path, params={**(params or {}), "page": page})
            items = body if isinstance(body, list) else body.get(key) or []
            yield from items
            seen += len(items)
            if isinstance(body, list) or not items:
                return
            if ("next" in body and not body["next"]) or seen >= int(body.get("total") or 0):
                return
            page += 1

    def users(self) -> dict[int, str]:
        """user id -> email."""
        return {
            int(u["id"]): str(u.get("email") or u["id"]) for u in self.call("GET", "/api/users")
        }

    def ensure_user(self, email: str) -> int:
        """An annotator's user id (made when missing; it signs in once a password is set)."""
        known = {v: k for k, v in self.users().items()}
        if email in known:
            return known[email]
        made = self.call("POST", "/api/users", json={"email": email, "username": email})
        return int(made["id"])

    def annotate(self, task_id: int, label: str, user: int | None = None) -> dict[str, Any]:
        """Make an annotation choosing `label` (as `user`, when given: the admin may)."""
        body: dict[str, Any] = {"result": choice(label), "lead_time": 1.0}
        if user is not None:
            body["completed_by"] = user
        return dict(self.call("POST", f"/api/tasks/{task_id}/annotations", json=body))

    def edit(self, annotation_id: int, label: str) -> dict[str, Any]:
        return dict(
            self.call("PATCH", f"/api/annotations/{annotation_id}", json={"result": choice(label)})
        )

    def delete(self, annotation_id: int) -> None:
        self.call("DELETE", f"/api/annotations/{annotation_id}")

    def ensure_webhook(self, project: int, url: str, secret: str) -> int:
        """The project's webhook to the receiver at `url` (annotation events, with the shared
        secret as `Authorization: Bearer`), made or updated."""
        body = {
            "project": project,
            "url": url,
            "send_payload": True,
            "send_for_all_actions": False,
            "is_active": True,
            "headers": {"Authorization": f"Bearer {secret}"},
            "actions": list(WEBHOOK_ACTIONS),
        }
        for hook in self.call("GET", "/api/webhooks", params={"project": project}) or []:
            if int(hook.get("project") or 0) == project and hook.get("url") == url:
                self.call("PATCH", f"/api/webhooks/{hook['id']}", json=body)
                return int(hook["id"])
        return int(self.call("POST", "/api/webhooks", json=body)["id"])
