"""The API in several worker processes that really share the load (`fraudloop serve --workers`).

uvicorn's own supervisor binds one socket in the parent and every worker accepts from its
queue: whichever worker is accepting takes the connections, so a client that connects while
another worker is still loading its model keeps every keep-alive connection on the first one
(`benchmarks/RESULTS.md`: the second worker idle). Here gunicorn is the process manager (it
restarts a worker that dies) with uvicorn's worker inside, and `reuse_port`: each worker binds a
socket of its own into one SO_REUSEPORT group after the fork, and the kernel gives each new
connection to one of them by a hash of its addresses, whatever the workers are doing (Linux):
even over many connections, a binomial spread over a few. Each worker builds the app itself, with its own warm model (`api.model_holder`); nothing
is loaded before the fork.
"""

from typing import Any

from gunicorn.app.base import BaseApplication

from fraudloop.settings import Settings

WORKER_CLASS = "uvicorn_worker.UvicornWorker"  # uvicorn's own `uvicorn.workers` is deprecated
KEEPALIVE_SECONDS = 5  # uvicorn's own default (gunicorn's is 2)
BOOT_SECONDS = 180  # a worker loads MLflow and its model before it answers (minutes if busy)


class _Api(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn with the options given here only (no config file, no GUNICORN_CMD_ARGS)."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings, self._options = settings, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from api.app import create_app

        return create_app(self._settings)


def options(host: str, port: int, workers: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": WORKER_CLASS,
        "reuse_port": True,
        "keepalive": KEEPALIVE_SECONDS,
        "timeout": BOOT_SECONDS,
        "proc_name": "fraudloop-api",
        "accesslog": None,
        "errorlog": "-",
    }


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve until stopped (SIGTERM: the arbiter lets the workers finish their requests)."""
    _Api(settings, options(host, port, workers)).run()
