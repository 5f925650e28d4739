"""Waiting on a background job in tests: poll a condition until it holds (no time is asserted)."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 180, what: str = "condition"):
    """The first truthy value of ``predicate()``, polled every 0.2 s; an AssertionError after ``timeout`` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
