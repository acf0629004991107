"""`python -m drift [--port 9081] [--detector MODEL_DIR] [--store DIR|s3://bucket] ...`"""

from __future__ import annotations

import logging
import sys

import uvicorn

from drift.monitor import Monitor
from drift.predlog import PredictionLog
from drift.retrain import Retrainer, make_trigger
from drift.server import create_app
from drift.settings import SidecarSettings, from_args
from sentiops.security.auth import TokenFile
from sentiops.security.limits import safe_log
from sentiops.security.ratelimit import RateLimiter

logger = logging.getLogger("sentiops.drift")


def main(argv: list[str] | None = None) -> None:
    safe_log()  # a client's value with a newline cannot forge a log line
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = from_args(argv)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    log = (
        PredictionLog(settings.store, settings.flush_rows, settings.flush_seconds)
        if settings.prediction_log
        else None
    )
    retrainer = Retrainer(
        settings.store,
        settings.model_name,
        make_trigger(settings),
        settings.retrain_datasets,
        settings.retrain_cooldown,
        settings.retrain_min_labels,
        max_token_share=settings.retrain_max_token_share,
        max_excess=settings.retrain_max_excess,
    )
    monitor = Monitor(settings, log=log, retrainer=retrainer).start()
    logging.getLogger("sentiops.drift").info(
        "drift sidecar on %s:%d: detector %s, store %s, window %d (max %.0fs), K=%d, retrain %s",
        settings.host,
        settings.port,
        settings.detector or "per model version from the store",
        settings.store,
        settings.window_size,
        settings.window_seconds,
        settings.consecutive,
        settings.retrain_mode if settings.retrain_enabled else "off",
    )
    uvicorn.run(
        create_app(monitor, _tokens(settings), _limiter(settings)),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
    )


def _tokens(settings: SidecarSettings) -> TokenFile | None:
    if not settings.auth_token_file:
        return None
    tokens = TokenFile(settings.auth_token_file)  # read again when the Secret changes
    logger.info("POST / needs a token (%s)", ", ".join(tokens.names))
    return tokens


def _limiter(settings: SidecarSettings) -> RateLimiter | None:
    if settings.rate_limit <= 0:
        return None
    return RateLimiter(settings.rate_limit)


if __name__ == "__main__":
    main()
