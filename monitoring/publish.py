"""A report's files under the state dir's `reports/`, and the same files as one MLflow run, so a
data scientist finds each week's report beside the models it judged."""

import math
from pathlib import Path

from mlflow.tracking import MlflowClient

from fraudloop import tracking
from monitoring.document import Document, pictures, render_html, render_markdown
from monitoring.pdf import render_pdf

EXPERIMENT = "fraudloop-reports"


def write_document(doc: Document, out_dir: Path, stem: str) -> dict[str, Path]:
    """`<stem>.html` (pictures embedded), `.md` with `<stem>-<picture>.png` beside it, `.pdf`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for pic in pictures(doc):
        written[pic.name] = out_dir / f"{stem}-{pic.name}.png"
        written[pic.name].write_bytes(pic.png)
    written["html"] = out_dir / f"{stem}.html"
    written["html"].write_text(render_html(doc))
    written["markdown"] = out_dir / f"{stem}.md"
    written["markdown"].write_text(render_markdown(doc, stem))
    written["pdf"] = render_pdf(doc, out_dir / f"{stem}.pdf")
    return written


def log_report(
    tracking_uri: str,
    artifact_root: Path | None,
    run_name: str,
    files: list[Path],
    metrics: dict[str, float | None],
    tags: dict[str, str],
) -> str:
    """One MLflow run in the reports experiment with the report's files and headline figures
    (figures that could not be measured are left out); returns its run id. `artifact_root`:
    where a new experiment keeps its files with a SQLite tracking store (None: the server's)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = tracking.experiment_id(tracking_uri, EXPERIMENT, artifact_root)
    run = client.create_run(experiment, run_name=run_name, tags=tags)
    run_id = run.info.run_id
    for key, value in metrics.items():
        if value is not None and math.isfinite(value):
            client.log_metric(run_id, key, float(value))
    for path in files:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return str(run_id)
