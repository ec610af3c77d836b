"""Session-wide fixtures: one Ray instance per test session (2 CPU cores), started on demand."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once for every test that needs it; shut it down at the end of the session."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
