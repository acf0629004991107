"""The local stack as `make run` (`sentiops.local.loop`) and `make up` (`sentiops.local.up`)
both wire it: the run's tokens, the drift sidecar taking the predictors' inference log, the
serving side (`LocalStack`: predictors behind the traffic split, Prometheus scraping them and
the sidecar) and, when Label Studio's environment is built (`make labelling-install`), Label
Studio with the labelling receiver (its webhooks in, labels out through the split's feedback
API with a token of its own).

    wiring = Wiring.build(work, store, sidecar_args=[...], label_studio=folder)
    try:
        wiring.start(model_dir, version)   # the sidecar, then the champion behind the split
        wiring.start_labelling()           # Label Studio and the receiver, if installed
        ...
    finally:
        wiring.stop()                      # every server, also on errors and Ctrl-C
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiops.config import MODEL_NAME
from sentiops.labelling.studio import label_studio_executable
from sentiops.local.rollout import LocalStack
from sentiops.local.stack import DriftSidecar, LabellingReceiver, LabelStudio, StackTokens


@dataclass(kw_only=True)
class Wiring:
    """The servers of one local run and how they are connected (see the module)."""

    work: Path
    store: str
    tokens: StackTokens
    sidecar: DriftSidecar
    stack: LocalStack
    studio: LabelStudio | None = None
    receiver: LabellingReceiver | None = None
    progress: Callable[[str], Any] = print

    @classmethod
    def build(
        cls,
        work: Path,
        store: str,
        *,
        sidecar_args: list[str],
        label_studio: Path | None = None,
        labelling_interval: float = 5.0,
        progress: Callable[[str], Any] = print,
    ) -> Wiring:
        """Nothing started yet. `label_studio`: Label Studio's folder (its data and admin),
        used when its environment is installed; None: no Label Studio. The labelling
        receiver pushes new texts and pulls every task each `labelling_interval` seconds
        (webhooks bring annotations in between)."""
        tokens = StackTokens(work)  # writes need a token: labels and the inference log
        sidecar = DriftSidecar(work / "drift", store, [*tokens.sidecar_args(), *sidecar_args])
        studio = receiver = None
        if label_studio is not None and label_studio_executable() is not None:
            studio = LabelStudio(label_studio)
            receiver = LabellingReceiver(
                work / "labelling",
                studio,
                store,
                "",
                tokens.labelstudio_token_file,
                interval=labelling_interval,
            )
        stack = LocalStack(
            work / "rollout",
            MODEL_NAME,
            predictor_args=[
                f"--logger_url={sidecar.url}/",
                f"--feedback_store={store}",
                *tokens.predictor_args(),
            ],
            extra_targets=[sidecar.target, *([receiver.target] if receiver else [])],
            progress=progress,
        )
        return cls(
            work=work,
            store=store,
            tokens=tokens,
            sidecar=sidecar,
            stack=stack,
            studio=studio,
            receiver=receiver,
            progress=progress,
        )

    def start(self, model_dir: Path, version: str | None) -> Wiring:
        """The drift sidecar, then `model_dir` (registry version `version`) behind the split."""
        self.progress(f"starting the drift sidecar on {self.sidecar.url}")
        self.sidecar.start(progress=self.progress)
        self.stack.start(model_dir, version)
        return self

    def start_labelling(self) -> bool:
        """Label Studio and the labelling receiver (labels through the split), when Label
        Studio is installed; False when it is not."""
        if self.studio is None or self.receiver is None:
            return False
        self.progress(
            f"starting Label Studio on {self.studio.url} (its first start migrates its "
            "database: ~1 min)"
        )
        self.studio.start(progress=self.progress)
        self.receiver.feedback_url = self.stack.split.url
        self.receiver.start(progress=self.progress)
        return True

    def urls(self) -> dict[str, str]:
        """Where each server answers."""
        urls = {
            "predictor (through the split)": self.stack.split.url,
            "prometheus": self.stack.prometheus.url,
            "drift sidecar": self.sidecar.url,
        }
        if self.studio is not None and self.receiver is not None:
            urls["label studio"] = self.studio.url
            urls["labelling receiver"] = self.receiver.url
        return urls

    def stop(self) -> None:
        """Every server this wiring started (each stop is a no-op for one never started)."""
        for server in (self.receiver, self.studio):
            if server is not None:
                server.stop()
        self.stack.stop()
        self.sidecar.stop()
