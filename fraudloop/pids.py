"""The processes fraudloop starts detached (Label Studio, the Prefect server, the runner)."""

import os
import signal


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie we could reap."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        reaped = 0  # not our child: a signal probe tells
    if reaped == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group a detached server leads (its workers go with it)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
