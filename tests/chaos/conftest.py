"""Fixtures of the chaos suite: RANDOM-weight bundles (tests/api/conftest.py), broken or
crafted ones beside them, and a real uvicorn server in a child process."""

from __future__ import annotations

from tests.api.conftest import (  # noqa: F401  (fixtures re-exported for this suite)
    make_client,
    random_bundles,
    repository,
)
