"""Start and stop a private, offline Label Studio server that lives in its own virtualenv.

The server pins libraries that clash with the app, so it runs as a separate process from
`.services/labelstudio-venv`; we only talk to it over HTTP on loopback.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed

from fraudloop.errors import FraudloopError, ServiceUnavailable
from fraudloop.pids import alive, signal_group
from fraudloop.settings import Settings

PID_FILE = "labelstudio.pid"
LOG_FILE = "labelstudio.log"

# Label Studio's reserved networks minus loopback, so webhooks may reach a local receiver only.
_BANNED_SUBNETS_EXCEPT_LOOPBACK = (
    "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,169.254.0.0/16,172.16.0.0/12,192.0.0.0/24,"
    "192.0.2.0/24,192.88.99.0/24,192.168.0.0/16,198.18.0.0/15,198.51.100.0/24,203.0.113.0/24,"
    "224.0.0.0/4,233.252.0.0/24,240.0.0.0/4,255.255.255.255/32,::/128,::ffff:0:0/96,"
    "::ffff:0:0:0/96,64:ff9b::/96,64:ff9b:1::/48,100::/64,2001:0000::/32,2001:20::/28,"
    "2001:db8::/32,2002::/16,fc00::/7,fe80::/10,ff00::/8"
)


def server_env(
    data_dir: Path, username: str, password: str, token: str, database: str | None = None
) -> dict[str, str]:
    """Environment for a private server: no update check, no Sentry, no analytics; its
    database in the data dir (SQLite), or the PostgreSQL `database` URL names.

    Inherited LABEL_STUDIO_*/HEARTEX_* variables are dropped because Label Studio reads them
    before the plain names and could silently re-enable what we turn off here.
    """
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "HEARTEX_"))
    }
    return {
        **inherited,
        **(postgres_env(database) if database else {}),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LATEST_VERSION_CHECK": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "USE_DEFAULT_BANNED_SUBNETS": "false",
        "USER_ADDITIONAL_BANNED_SUBNETS": _BANNED_SUBNETS_EXCEPT_LOOPBACK,
    }


def postgres_env(database: str) -> dict[str, str]:
    """Label Studio's own settings for a PostgreSQL database (`DJANGO_DB=default`, POSTGRE_*)."""
    url = make_url(database)
    return {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": url.database or "",
        "POSTGRE_USER": url.username or "postgres",
        "POSTGRE_PASSWORD": url.password or "",
        "POSTGRE_HOST": url.host or "127.0.0.1",
        "POSTGRE_PORT": str(url.port or 5432),
    }


def is_up(url: str) -> bool:
    """True when the server answers its health check."""
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=2.0).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False


def wait_healthy(
    url: str, timeout: float = 120.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until /health answers; a fresh data dir needs about a minute of migrations.

    With `process`, fail as soon as it exits instead of waiting out the timeout.
    """

    def probe() -> bool:
        if process is not None and process.poll() is not None:
            raise ServiceUnavailable(
                f"Label Studio exited with code {process.returncode} while starting; "
                "see labelstudio.log in its data dir"
            )
        return is_up(url)

    poll = retry(
        retry=retry_if_result(lambda up: not up),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.5),
    )(probe)
    try:
        poll()
    except RetryError as exc:
        raise ServiceUnavailable(
            f"Label Studio at {url} did not become healthy within {timeout:.0f} s; "
            "see labelstudio.log in its data dir"
        ) from exc


def start_configured(settings: Settings) -> int | None:
    """`start` with everything taken from the settings (the CLI and the demo use this); in the
    server profile on its PostgreSQL database (created beforehand: `flows.profile`)."""
    return start(
        settings.labelstudio_venv,
        settings.labelstudio_data_dir,
        host=settings.labelstudio_host,
        port=settings.labelstudio_port,
        username=settings.labelstudio_username,
        password=settings.labelstudio_password,
        token=settings.labelstudio_token,
        database=settings.server_database("labelstudio") if settings.profile == "server" else None,
    )


def start(
    venv: Path,
    data_dir: Path,
    host: str,
    port: int,
    username: str,
    password: str,
    token: str,
    timeout: float = 300.0,  # first start migrates a fresh database: ~1 min idle, 3 under load
    database: str | None = None,
) -> int | None:
    """Launch the server detached and wait until healthy; returns its pid. Its database is
    SQLite in `data_dir`, or the PostgreSQL one `database` names.

    A no-op when a server already answers on host:port (returns our recorded pid, or None if
    someone else started it); waits when our recorded process is still starting there.
    """
    url = f"http://{host}:{port}"
    ours = running(data_dir)
    if is_up(url):
        check_token(url, token)
        return ours[0] if ours and ours[1] == url else None
    if ours and ours[1] == url:
        wait_healthy(url, timeout)
        check_token(url, token)
        return ours[0]
    if ours:
        raise FraudloopError(
            f"Label Studio for {data_dir} already runs at {ours[1]} (pid {ours[0]}); "
            "stop it first (`fraudloop down`): two servers must not share one database"
        )
    binary = Path(venv).absolute() / "bin" / "label-studio"
    if not binary.exists():
        raise FraudloopError(
            f"Label Studio is not installed at {binary}; create the venv from "
            "services/labelstudio.lock.txt"
        )
    if _port_busy(host, port):
        raise FraudloopError(
            f"port {port} on {host} is taken by something that is not Label Studio; "
            "set FRAUDLOOP_LABELSTUDIO_URL to a free port"
        )
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), "start", "--internal-host", host, "--port", str(port), "--no-browser"]
    with (data_dir / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=data_dir,
            env=server_env(data_dir, username, password, token, database),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (data_dir / PID_FILE).write_text(f"{proc.pid} {url}\n")
    try:
        wait_healthy(url, timeout, process=proc)
        check_token(url, token)
    except FraudloopError:
        stop(data_dir)
        raise
    return proc.pid


def check_token(url: str, token: str) -> str:
    """The e-mail the API token logs in as.

    Label Studio applies LABEL_STUDIO_USER_TOKEN only when it creates the user, so a data dir
    first started with another token rejects ours; say so instead of failing on every call.
    """
    response = httpx.get(
        f"{url.rstrip('/')}/api/current-user/whoami",
        headers={"Authorization": f"Token {token}"},
        timeout=10.0,
    )
    if response.status_code in (401, 403):
        raise FraudloopError(
            f"Label Studio at {url} rejects the API token: its data dir was first started with "
            "another one; set FRAUDLOOP_LABELSTUDIO_TOKEN to that token or use a fresh data dir"
        )
    if response.is_error:
        raise ServiceUnavailable(f"Label Studio at {url} answered {response.status_code} to whoami")
    return str(response.json()["email"])


def stop(data_dir: Path, grace: float = 15.0) -> bool:
    """Terminate the server's process group; True if something was running. Idempotent."""
    ours = running(data_dir)
    (Path(data_dir) / PID_FILE).unlink(missing_ok=True)
    if ours is None:
        return False
    pid = ours[0]
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        signal_group(pid, signal.SIGKILL)
    return True


def running(data_dir: Path) -> tuple[int, str] | None:
    """(pid, url) of the live server started from this data dir, from its pid file."""
    try:
        pid_text, url = (Path(data_dir) / PID_FILE).read_text().split()
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    return (pid, url) if alive(pid) else None


def _port_busy(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0
