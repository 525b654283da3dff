"""Polling with a deadline, for tests that wait on real processes and servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_for(fn: Callable[[], T], timeout_s: float, what: str, *, poll_s: float = 0.2) -> T:
    """Call ``fn`` until it returns something truthy; fail naming ``what`` and the last result.

    An HTTP error counts as "not yet" (a server still starting), and is shown if time runs out.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = fn()
            if result:
                return result
            last = result
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(poll_s)
    raise AssertionError(f"{what} not reached within {timeout_s} s (last: {last!r})")
