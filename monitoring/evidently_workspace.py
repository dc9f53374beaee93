"""Where the Evidently workspace lives (`<home>/evidently`) and the command that serves it:
light on purpose, so the CLI and `fraudloop up` can name it without importing Evidently."""

from pathlib import Path

UI_PORT = 8001  # beside the API's 8000 (`fraudloop report evidently-ui --port` moves it)


def workspace_dir(home: Path) -> Path:
    return home.resolve() / "evidently"


def ui_argv(python: str, home: Path, port: int = UI_PORT) -> list[str]:
    """`python -m evidently.cli ui` on the workspace, on loopback (Evidently's default host)."""
    workspace = str(workspace_dir(home))
    return [python, "-m", "evidently.cli", "ui", "--workspace", workspace, "--port", str(port)]


def ui_command(home: Path, port: int = UI_PORT) -> str:
    return f"uv run evidently ui --workspace {workspace_dir(home)} --port {port}"
