"""Small request helpers shared by the emulator tests."""

from __future__ import annotations

from typing import Any

import httpx


def acquire(api: httpx.Client, topic: str = "topic", worker: str = "w1", n: int = 1,
            lock: str = "PT5M", **extra: Any) -> list[dict[str, Any]]:
    """Acquire and insist on 200; returns the acquired jobs."""
    response = api.post("/acquire/jobs", json={
        "topic": topic, "lockDuration": lock, "workerId": worker, "numberOfTasks": n, **extra})
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()
    return jobs
