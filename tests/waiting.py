"""What the integration tests that start servers share: a free port, and polling until."""

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest


def free_port() -> int:
    """A loopback port nothing listens on now (a server started on it may still lose a race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll until `check` returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s")
