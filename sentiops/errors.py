"""Typed failures. Every error says what was wrong and how to fix it.

The CLI, the KFP components and the KServe predictor map these to exit codes / HTTP statuses in
one place each, so the core raises them and never prints.
"""

from __future__ import annotations


class SentiOpsError(Exception):
    """Base class: `message` says what went wrong, `hint` how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  hint: {hint}" if hint else message)


class DataError(SentiOpsError):
    """The input data cannot be read or does not have the expected shape."""

    exit_code = 2


class ValidationFailed(SentiOpsError):
    """Validation found problems that make training meaningless; `report` names the rows."""

    exit_code = 3

    def __init__(self, message: str, report: dict, hint: str = "") -> None:
        super().__init__(message, hint)
        self.report = report


class ModelError(SentiOpsError):
    """A model directory is missing, incomplete, corrupt or of an unknown type."""

    exit_code = 4


class InvalidInput(SentiOpsError):
    """A prediction request is malformed (empty text, oversized batch, wrong schema)."""

    exit_code = 5


class StorageError(SentiOpsError):
    """The artifact store (local or S3) cannot be reached or returned bad data."""

    exit_code = 6


class TrackingError(SentiOpsError):
    """MLflow cannot be reached or refused a write."""

    exit_code = 7


class ConfigError(SentiOpsError):
    """A setting, parameter or hyperparameter is unknown or out of range."""

    exit_code = 2


class GateRejected(SentiOpsError):
    """Something tried to promote a model the gate did not approve."""

    exit_code = 9


class RegistryError(SentiOpsError):
    """A model lifecycle transition is not allowed (e.g. promoting a version that is not the
    candidate)."""

    exit_code = 9


class PipelineError(SentiOpsError):
    """The pipeline could not be built, run or submitted."""

    exit_code = 8


class RolloutError(SentiOpsError):
    """A rollout could not finish (the canary was rolled back), or cannot start; `record` holds
    the decision record so far when there is one."""

    exit_code = 10

    def __init__(self, message: str, hint: str = "", record: object | None = None) -> None:
        super().__init__(message, hint)
        self.record = record


class StackError(SentiOpsError):
    """A local server (predictor, Prometheus, traffic split) did not start or stopped."""

    exit_code = 11


class DriftError(SentiOpsError):
    """A drift detector cannot be fitted, loaded or run (bad input, missing or corrupt detector,
    or Alibi Detect missing from this environment)."""

    exit_code = 12


class FeedbackError(SentiOpsError):
    """Labels for earlier predictions were refused: malformed, an unknown label or prediction
    id, or a duplicate. `status` is the HTTP status the feedback endpoint answers with and
    `problems` names every refused item (nothing of a refused request is stored)."""

    exit_code = 13

    def __init__(
        self, message: str, hint: str = "", status: int = 400, problems: list | None = None
    ) -> None:
        super().__init__(message, hint)
        self.status = status
        self.problems = list(problems or [])
