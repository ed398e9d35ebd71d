"""Small helpers shared by the cluster tests: the blocking poll lives in tests/support/waiting."""

from __future__ import annotations

from tests.support.waiting import poll_until as eventually

__all__ = ["eventually"]
