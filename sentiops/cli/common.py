"""What every `sentiops` command module shares: the consoles and the one error handler
(SentiOpsError -> the message, the hint and its exit code). It imports nothing of the CLI back,
so command modules depend on it and never on each other's helpers."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from sentiops.errors import SentiOpsError

F = TypeVar("F", bound=Callable[..., Any])
console = Console(width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True)


def handle_errors(fn: F) -> F:
    """A command that prints what was wrong and how to fix it, and exits with its code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SentiOpsError as exc:
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
            if exc.hint:
                err.print(f"[yellow]hint:[/] {exc.hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


#: The same decorator under the name the command modules use.
handled = handle_errors
