"""The detached processes `fraudloop up` starts: `down` stops exactly those, never a process
that only inherited a pid from the pid file, and never a service that was not ours."""

import sys
from pathlib import Path

import psutil
import pytest

from flows.server import Service
from fraudloop.errors import ServiceUnavailable

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_a_service_is_stopped_by_its_pid_file(tmp_path: Path) -> None:
    service = Service("sleeper", tmp_path)
    pid = service.start(SLEEP, "http://127.0.0.1:1", lambda: True, {}, timeout=10)
    assert service.running() == (pid, "http://127.0.0.1:1")
    assert service.stop() is True
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert service.running() is None
    assert service.stop() is False  # idempotent


def test_a_pid_file_naming_another_process_stops_nothing(tmp_path: Path) -> None:
    service = Service("sleeper", tmp_path)
    pid = service.start(SLEEP, "http://127.0.0.1:1", lambda: True, {}, timeout=10)
    kept = service.pid_file.read_text()
    _, url, _ = kept.split()
    service.pid_file.write_text(f"{pid} {url} 1.00\n")  # the pid, reused by another process
    assert service.running() is None
    assert service.stop() is False
    assert psutil.Process(pid).is_running()
    service.pid_file.write_text(kept)
    assert service.stop() is True


def test_a_service_not_ours_is_used_and_left_alone(tmp_path: Path) -> None:
    service = Service("server", tmp_path)
    assert service.ensure(SLEEP, "http://127.0.0.1:1", lambda: True, {}, timeout=10) is None
    assert not service.pid_file.exists()
    assert service.stop() is False


def test_a_service_that_exits_while_starting_names_its_log(tmp_path: Path) -> None:
    service = Service("broken", tmp_path)
    failing = [sys.executable, "-c", "import sys; print('cannot bind'); sys.exit(3)"]
    with pytest.raises(ServiceUnavailable, match=r"exited with code 3.*broken\.log"):
        service.start(failing, "http://127.0.0.1:1", lambda: False, {}, timeout=30)
    assert "cannot bind" in service.log_file.read_text()
    assert service.running() is None
