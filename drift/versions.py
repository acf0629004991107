"""Which model versions the sidecar takes events for.

Every version the sidecar sees gets a window, metric series, prediction-log parts and log
lines, so a sender inventing versions could grow all of them without bound. A version is
taken when it is well formed (1-64 characters of `A-Z a-z 0-9 . _ -`) and

- with a detector from the store (service mode, the local stack): the store holds that
  model (`config.model_uri(store, version)/model.json`; looked up once, cached — a miss is
  cached for `miss_ttl` seconds so a model pushed a moment later is found);
- with one fixed detector (a sidecar in the predictor's pod): it is one of the first
  `max_versions` versions seen (the pod's predictor serves one; a canary revision is its own
  pod);

and in both cases at most `max_versions` versions are taken in all. An event of any other
version is refused (400, `sentiops_drift_bad_events_total{reason="unknown_version"}`).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

VERSION = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_VERSIONS = 32


class VersionGate:
    def __init__(
        self,
        exists: Callable[[str], bool] | None,
        max_versions: int = MAX_VERSIONS,
        miss_ttl: float = 30.0,
    ) -> None:
        """`exists(version)`: does the store hold this model (None: one fixed detector)."""
        self.exists, self.max_versions, self.miss_ttl = exists, max_versions, miss_ttl
        self.known: set[str] = set()
        self.misses: OrderedDict[str, float] = OrderedDict()
        self.lock = threading.Lock()

    def cached(self, version: str) -> str | None:
        """'' (taken) or why not, when that is known without the store; None otherwise."""
        if not VERSION.fullmatch(version):
            return f"model version {version[:70]!r} is not 1-64 characters of A-Z a-z 0-9 . _ -"
        with self.lock:
            if version in self.known:
                return ""
            if len(self.known) >= self.max_versions:
                return (
                    f"this sidecar takes events of at most {self.max_versions} model "
                    f"versions and has {len(self.known)}; restart it to start "
                    "over"
                )
            if self.exists is None:  # one fixed detector: the first versions seen
                self.known.add(version)
                return ""
            missed = self.misses.get(version)
            if missed is not None and time.monotonic() - missed < self.miss_ttl:
                return self._unknown(version)
        return None

    def check(self, version: str) -> str:
        """'' when events of `version` are taken, else why not (may ask the store)."""
        reason = self.cached(version)
        if reason is not None:
            return reason
        assert self.exists is not None
        found = self.exists(version)
        with self.lock:
            if found:
                self.known.add(version)
                self.misses.pop(version, None)
                return ""
            self.misses[version] = time.monotonic()
            self.misses.move_to_end(version)
            while len(self.misses) > 1024:
                self.misses.popitem(last=False)
        return self._unknown(version)

    @staticmethod
    def _unknown(version: str) -> str:
        return (
            f"model version {version!r} is not in the store: events are taken only for "
            "models the pipeline pushed"
        )
