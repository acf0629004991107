"""The image tests share one working container per image (tests/images/oci.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import oci


@pytest.fixture(scope="session", autouse=True)
def _working_containers() -> Iterator[None]:
    yield
    oci.remove_containers()
