"""Against a real Label Studio server (tests/labelling/conftest.py): the store's queued texts
and random sample become tasks (the queue pre-annotated, most uncertain first; the sample
without the model's answer); annotations made through the API and by clicking in Label
Studio's page (headless Chromium) come back by webhook as stored labels with provenance; an
edit revises and a deletion withdraws; a webhook without the secret stores nothing; agreement
is computed and a tie held for review; Label Studio stopped and restarted in the middle of the
receiver's work loses and doubles nothing. The screenshot of the two projects is
docs/img/labelling.png (the README's)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentiops.feedback.intake import Feedback
from sentiops.feedback.labels import feedback_prefix, read_labels
from sentiops.labelling.studio import LabelStudioUnavailable, Studio
from sentiops.labelling.sync import StoreSink, Sync
from sentiops.local.stack import LabelStudio
from sentiops.store import layout
from tests.console.conftest import chromium_paths
from tests.helpers import wait_until
from tests.labelling.conftest import start_receiver
from tests.labelling.store import write_traffic

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _sync(studio: Studio, store: Path, name: str) -> Sync:
    return Sync(studio, str(store), StoreSink(Feedback(str(store), model_name=name)), name)


def _stored(store: Path) -> Any:
    return read_labels(str(store)).set_index("id")


def _row(store: Path, rid: str) -> dict[str, Any] | None:
    """The stored label of prediction `rid`, None before it is stored."""
    stored = _stored(store)
    return dict(stored.loc[rid]) if rid in stored.index else None


def _raw_rows(store: Path) -> Any:
    import pandas as pd

    files = [f.uri for f in layout.list_files(feedback_prefix(str(store)))]
    return pd.concat([pd.read_parquet(f) for f in files]) if files else pd.DataFrame()


def test_tasks_webhooks_and_labels_with_provenance(
    label_studio: LabelStudio, tmp_path: Path
) -> None:
    store, name = tmp_path / "store", "sentiment-webhooks"
    traffic = write_traffic(store, model_name=name)
    studio = label_studio.studio()
    sync = _sync(studio, store, name)
    receiver = start_receiver(sync, tmp_path / "webhook-secret")
    try:
        wait_until(
            lambda: receiver.worker.last.get("round"), timeout=60, what="the receiver's first round"
        )
        assert receiver.worker.last["round"]["pushed"] == {"queue": 4, "evaluation": 4}
        assert sync.push() == {"queue": 0, "evaluation": 0}  # nothing doubled
        projects = sync.projects()
        queue = {t["data"]["prediction_id"]: t for t in studio.tasks(projects["queue"])}
        evaluation = {t["data"]["prediction_id"]: t for t in studio.tasks(projects["evaluation"])}
        assert set(queue) == {r["id"] for r in traffic["queue"]}
        assert set(evaluation) == {r["id"] for r in traffic["random"]}
        for row in traffic["queue"]:  # pre-annotated with the model's label and confidence
            (pre,) = queue[row["id"]]["predictions"]
            assert pre["result"][0]["value"]["choices"] == [row["label"]]
            assert pre["score"] == pytest.approx(row["confidence"])
            assert queue[row["id"]]["data"]["window_id"] == "w-1"
        for task in evaluation.values():  # nothing of the model's answer, nor the sample
            assert task["predictions"] == [] and set(task["data"]) == {
                "text",
                "prediction_id",
                "model_version",
                "predicted_at",
            }
        # the queue offers the most uncertain text first (Label Studio's uncertainty sampling)
        first = studio.call("GET", f"/api/projects/{projects['queue']}/next")
        assert first["data"]["prediction_id"] == traffic["queue"][0]["id"]

        # a webhook without the secret, or with another, is refused and stores nothing
        event = {"action": "ANNOTATION_CREATED", "task": {"id": first["id"]}}
        hook = f"{receiver.url}/webhook"
        assert httpx.post(hook, json=event).status_code == 401
        assert (
            httpx.post(
                hook, json=event, headers={"Authorization": "Bearer not-the-secret-at-all"}
            ).status_code
            == 403
        )
        assert (
            httpx.post(
                hook, content=b"[" * 100, headers={"Authorization": f"Bearer {receiver.secret}"}
            ).status_code
            == 400
        )

        # an annotation made through the API, by an annotator of its own
        annotator = studio.ensure_user("ann1@sentiops.local")
        target = traffic["random"][0]
        made = studio.annotate(evaluation[target["id"]]["id"], "neutral", annotator)
        row = wait_until(
            lambda: _row(store, target["id"]), timeout=30, what="the API's annotation stored"
        )
        assert row["label"] == "neutral" and row["annotator"] == "ann1@sentiops.local"
        assert row["origin"] == (
            f"labelstudio:project={projects['evaluation']}:task={evaluation[target['id']]['id']}"
        )
        assert f"annotations={made['id']}" in row["revision"]
        assert row["labelled_by"] == "labelstudio" and row["sample"] == "random"
        assert row["text"] == target["text"] and row["source"] == "labelstudio"

        # one made by clicking in Label Studio's page
        clicked = traffic["queue"][0]
        _click(label_studio, projects["queue"], queue[clicked["id"]]["id"], "negative", tmp_path)
        row = wait_until(
            lambda: _row(store, clicked["id"]), timeout=30, what="the clicked annotation stored"
        )
        assert row["label"] == "negative" and row["annotator"] == label_studio.admin.email
        assert row["sample"] == "targeted" and row["predicted_label"] == clicked["label"]

        # an edit revises the label, a deletion withdraws it
        studio.edit(made["id"], "positive")
        wait_until(
            lambda: _stored(store).loc[target["id"], "label"] == "positive",
            timeout=30,
            what="the edited annotation's label",
        )
        studio.delete(made["id"])
        wait_until(
            lambda: target["id"] not in _stored(store).index, timeout=30, what="the label withdrawn"
        )
        assert Feedback(str(store), model_name=name).live_metrics() == {}
        assert receiver.worker.failures == 0
        raw = _raw_rows(store)
        assert len(raw[raw["id"] == target["id"]]) == 3  # label, revision, withdrawal
        assert sync.pull()["accepted"] == 0  # everything stored already
    finally:
        receiver.stop()


def _click(server: LabelStudio, project: int, task: int, label: str, tmp: Path) -> None:
    """Sign in to Label Studio in headless Chromium, open the task, click `label`, Submit;
    also writes the screenshot of the two projects (docs/img/labelling.png)."""
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chromium'}",
        "--window-size=1200,800",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(driver_path)), options=options)
    driver.set_page_load_timeout(60)
    try:
        driver.get(f"{server.url}/user/login")
        driver.find_element(By.NAME, "email").send_keys(server.admin.email)
        driver.find_element(By.NAME, "password").send_keys(server.admin.password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_until(lambda: "/user/login" not in driver.current_url, timeout=30, what="signed in")
        driver.get(f"{server.url}/projects/{project}/data?task={task}")
        studio = server.studio()

        def click(xpath: str) -> bool:
            """Click the last element `xpath` finds (the page re-renders: try again)."""
            try:
                found = driver.find_elements(By.XPATH, xpath)
                if found:
                    found[-1].click()
                return bool(found)
            except StaleElementReferenceException:
                return False

        wait_until(
            lambda: click(f"//span[normalize-space(text())='{label}']"), timeout=60, what="a choice"
        )
        wait_until(
            lambda: click("//button[normalize-space(.)='Submit']"), timeout=30, what="Submit"
        )
        wait_until(
            lambda: studio.task(task)["annotations"], timeout=30, what="the annotation submitted"
        )
        driver.get(f"{server.url}/projects")
        wait_until(
            lambda: "evaluation sample" in driver.find_element(By.TAG_NAME, "body").text,
            timeout=60,
            what="the projects page",
        )
        driver.set_window_size(800, 480)
        time.sleep(1.0)
        shots = REPO / "build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shots / "labelling.png"))
        shutil.copy(shots / "labelling.png", REPO / "docs" / "img" / "labelling.png")
    finally:
        driver.quit()


def test_agreement_and_ties_held_for_review(label_studio: LabelStudio, tmp_path: Path) -> None:
    from sentiops.labelling.annotations import krippendorff_alpha

    store, name = tmp_path / "store", "sentiment-agreement"
    traffic = write_traffic(store, random=3, queued=0, model_name=name)
    studio = label_studio.studio()
    sync = _sync(studio, store, name)
    sync.push()
    tasks = {
        t["data"]["prediction_id"]: t["id"] for t in studio.tasks(sync.projects()["evaluation"])
    }
    users = [studio.ensure_user(f"rater{i}@sentiops.local") for i in range(3)]
    given = [
        ("positive", "positive", "positive"),
        ("negative", "negative", "neutral"),
        ("positive", "negative"),
    ]
    for row, labels in zip(traffic["random"], given, strict=True):
        for user, label in zip(users, labels, strict=False):
            studio.annotate(tasks[row["id"]], label, user)
    report = sync.pull()
    assert report["accepted"] == 2 and report["held"] == {"queue": 0, "evaluation": 1}
    stored = _stored(store)
    assert stored.loc[traffic["random"][1]["id"], "label"] == "negative"
    assert stored.loc[traffic["random"][1]["id"], "annotator"] == (
        "rater0@sentiops.local,rater1@sentiops.local"
    )
    assert traffic["random"][2]["id"] not in stored.index  # the tie waits for a reviewer
    found = sync.agreement["evaluation"]
    assert found["alpha"] == pytest.approx(krippendorff_alpha(given)) and found["units"] == 3
    assert found["annotators"]["rater2@sentiops.local"]["agreement"] == pytest.approx(0.5)
    # a reviewer breaks the tie: the label is stored
    studio.annotate(tasks[traffic["random"][2]["id"]], "negative")
    assert sync.pull()["accepted"] == 1 and sync.held["evaluation"] == []


def test_label_studio_stopped_and_restarted_mid_sync(
    label_studio: LabelStudio, tmp_path: Path
) -> None:
    """The receiver works every second; Label Studio is stopped under it, the queue grows in
    the store meanwhile, Label Studio comes back on the same data: every text becomes one task,
    every annotation one label."""
    store, name = tmp_path / "store", "sentiment-restart"
    first = write_traffic(store, random=3, queued=3, model_name=name)
    studio = label_studio.studio()
    studio.tries, studio.backoff = 2, 0.2  # fail fast: the receiver's backoff takes over
    sync = _sync(studio, store, name)
    receiver = start_receiver(sync, tmp_path / "webhook-secret", interval=1.0)
    try:
        wait_until(lambda: receiver.worker.last.get("round"), timeout=60, what="the first round")
        project = sync.projects()["evaluation"]
        for task in list(studio.tasks(project))[:2]:
            studio.annotate(task["id"], "positive")
        label_studio.stop()
        with pytest.raises(LabelStudioUnavailable):
            studio.task_count(project)
        wait_until(lambda: receiver.worker.failures >= 2, timeout=60, what="the receiver's retries")
        second = write_traffic(store, random=2, queued=2, model_name=name, tag="late-")
        label_studio.start()
        wait_until(
            lambda: receiver.worker.failures == 0, timeout=120, what="the receiver back at work"
        )
        ids = {
            r["id"] for r in first["random"] + first["queue"] + second["random"] + second["queue"]
        }
        wait_until(
            lambda: (
                {
                    str(t["data"]["prediction_id"])
                    for k in ("queue", "evaluation")
                    for t in studio.tasks(sync.projects()[k])
                }
                >= ids
                or None
            ),
            timeout=60,
            what="every text a task",
        )
        for task in studio.tasks(project):
            if not task["annotations"]:
                studio.annotate(task["id"], "negative")
        wait_until(lambda: len(_stored(store)) == 5, timeout=60, what="every annotation a label")
    finally:
        receiver.stop()
    tasks = [
        str(t["data"]["prediction_id"])
        for k in ("queue", "evaluation")
        for t in studio.tasks(sync.projects()[k])
    ]
    assert sorted(tasks) == sorted(ids)  # nothing lost, nothing doubled
    raw = _raw_rows(store)
    assert len(raw) == 5 and raw["id"].is_unique
    assert sync.pull()["unchanged"] == 0 and sync.push() == {"queue": 0, "evaluation": 0}
