"""`make up` (`sentiops.local.up`): with no champion the pipeline trains the baseline, then the
whole local stack answers until `wait()` returns, and every server stops after."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sentiops.local.processes import free_port
from sentiops.security.auth import token_from_file
from tests.servers import refused

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_up_trains_a_first_champion_serves_it_and_stops_everything(
    sentiops_home: Path, tmp_path: Path
) -> None:
    from sentiops.local.up import up
    from sentiops.registry import lifecycle as registry

    seen: dict[str, object] = {}
    lines: list[str] = []
    console_port, mlflow_port = free_port(), free_port()

    def while_up() -> None:
        base = f"http://127.0.0.1:{console_port}"
        seen["health"] = httpx.get(base + "/healthz", timeout=30).json()
        seen["status"] = httpx.get(base + "/api/status", timeout=60).json()
        predictor = next(line.split()[-1] for line in lines if "predictor" in line)
        r = httpx.post(
            f"{predictor}/v1/models/sentiment:predict",
            json={"instances": ["the flight was great"]},
            timeout=30,
        )
        seen["predict"] = (r.status_code, r.json())
        # labels need the run's annotators' token (through the console, as a person sends it)
        rid = httpx.post(
            base + "/api/predict", json={"text": "the flight was great"}, timeout=60
        ).json()["request_id"]
        label = {"id": rid, "label": "positive"}
        seen["no_token"] = httpx.post(base + "/api/feedback", json=label, timeout=30).status_code
        token = token_text(tmp_path)
        seen["token"] = httpx.post(
            base + "/api/feedback",
            json=label,
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        ).status_code
        seen["mlflow"] = httpx.get(f"http://127.0.0.1:{mlflow_port}/health", timeout=60).status_code

    urls = up(
        tmp_path / "up",
        rate=2.0,
        console_port=console_port,
        mlflow_port=mlflow_port,
        progress=lines.append,
        wait=while_up,
    )
    champion = registry.version_of(registry.CHAMPION)
    assert champion == "1" and any("no champion yet" in line for line in lines)
    code, body = seen["predict"]  # type: ignore[misc]
    assert code == 200 and body["predictions"][0]["label"] in ("negative", "neutral", "positive")
    assert seen["mlflow"] == 200
    assert (seen["no_token"], seen["token"]) == (401, 200)
    assert not any(token_text(tmp_path) in line for line in lines)  # never printed
    status = seen["status"]
    assert isinstance(status, dict)
    aliases = {a["alias"]: a["version"] for a in status["registry"]["data"]["aliases"]}
    assert aliases["champion"] == champion
    for url in urls.values():
        assert refused(url), url


def token_text(tmp_path: Path) -> str:
    """The annotators' token: the first line of the run's token file."""
    return token_from_file(tmp_path / "up" / "tokens")
