"""The weekly QA report: one self-contained HTML page plus a Markdown copy that can be mailed."""

import base64
import html
import io
import os
from datetime import datetime
from pathlib import Path

from matplotlib.figure import Figure
from pydantic import BaseModel

from fraudloop.alerts import Alert
from monitoring.drift import DriftSummary
from monitoring.metrics import MonitoringMetrics

Rows = list[list[str]]


class ReportSummary(BaseModel):
    """What the report cannot derive from the decisions table: the period and the model registry."""

    period_start: datetime
    period_end: datetime
    models_trained: int
    models_promoted: int
    champion: str | None = None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _drift_text(drift: DriftSummary | None) -> str:
    if drift is None:
        return "not run"
    found = "yes" if drift.dataset_drift else "no"
    score = {None: "", True: "; score drifted", False: "; score stable"}[drift.score_drifted]
    return f"{found} ({drift.n_drifted}/{drift.n_columns} features drifted{score})"


def headline_rows(
    summary: ReportSummary, drift: DriftSummary | None, metrics: MonitoringMetrics
) -> Rows:
    return [
        ["Transactions scored", str(metrics.scored)],
        ["Auto-allowed", str(metrics.auto_allowed)],
        ["Auto-blocked", str(metrics.auto_blocked)],
        ["Sent to review", str(metrics.sent_to_review)],
        ["Reviewed", str(metrics.overrides.reviewed)],
        ["Overridden", str(metrics.overrides.overridden)],
        ["Override rate", _pct(metrics.overrides.rate)],
        ["High-impact override rate", _pct(metrics.high_impact_overrides.rate)],
        ["Model versions trained", str(summary.models_trained)],
        ["Model versions promoted", str(summary.models_promoted)],
        ["Champion", summary.champion or "n/a"],
        ["Drift found", _drift_text(drift)],
    ]


def latency_rows(metrics: MonitoringMetrics) -> Rows:
    return [
        [
            route,
            str(s.reviewed),
            _num(s.median_minutes),
            _num(s.p90_minutes),
            _num(s.median_sla_minutes, ".0f"),
            _pct(s.sla_compliance),
            str(s.open_overdue),
        ]
        for route, s in metrics.latency.items()
    ]


LATENCY_HEADER = ["Route", "Reviewed", "Median min", "p90 min", "SLA min", "SLA met", "Overdue"]


def confidence_rows(metrics: MonitoringMetrics) -> Rows:
    c = metrics.confidence
    return [[str(c.n), *(_num(v, ".3f") for v in (c.mean, c.p10, c.median, c.p90))]]


def alert_rows(alerts: list[Alert]) -> Rows:
    return [[a.rule, a.scope, a.at.isoformat(timespec="minutes"), a.message] for a in alerts]


def plot_png(metrics: MonitoringMetrics) -> bytes:
    """Score distribution per route and daily volume: the two pictures the QA meeting asks for.

    Scores are shown as each route's share per bin, so a small review queue stays visible next
    to the auto-allowed bulk.
    """
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    hist_ax, vol_ax = fig.subplots(1, 2)
    days = list(metrics.daily_volume)
    bottom = [0] * len(days)
    for i, route in enumerate(metrics.routes):
        counts = metrics.score_histogram.get(route, [])
        total = sum(counts) or 1
        hist_ax.stairs([c / total for c in counts], metrics.score_bins, color=f"C{i}", label=route)
        values = [metrics.daily_volume[d].get(route, 0) for d in days]
        vol_ax.bar(days, values, bottom=bottom, color=f"C{i}", label=route)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    hist_ax.set(title="Score distribution by route", xlabel="fraud score", ylabel="share of route")
    vol_ax.set(title="Daily decisions by route", ylabel="decisions")
    vol_ax.tick_params(axis="x", labelrotation=45)
    if metrics.routes:
        vol_ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _html_table(rows: Rows, header: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header or [])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _md_table(rows: Rows, header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


CSS = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}"
)


def render_html(
    title: str, sections: dict[str, tuple[Rows, list[str]]], png: bytes, drift_link: str | None
) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for name, (rows, header) in sections.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(_html_table(rows, header) if rows else "<p>None.</p>")
    if drift_link:
        parts.append(f'<p><a href="{html.escape(drift_link)}">Evidently drift report</a></p>')
    image = base64.b64encode(png).decode()
    parts.append(
        f'<h2>Pictures</h2><img alt="scores and volumes" src="data:image/png;base64,{image}">'
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def render_markdown(
    title: str, sections: dict[str, tuple[Rows, list[str]]], png_name: str, drift_link: str | None
) -> str:
    parts = [f"# {title}"]
    for name, (rows, header) in sections.items():
        parts.append(f"## {name}\n\n" + (_md_table(rows, header) if rows else "None."))
    if drift_link:
        parts.append(f"[Evidently drift report]({drift_link})")
    parts.append(f"![scores and volumes]({png_name})")
    return "\n\n".join(parts) + "\n"


def build_report(
    summary: ReportSummary,
    drift: DriftSummary | None,
    metrics: MonitoringMetrics,
    alerts: list[Alert],
    out_dir: Path,
) -> Path:
    """Write qa-report-<end date>.html (image embedded), .md and .png; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"qa-report-{summary.period_end:%Y-%m-%d}"
    title = f"fraudloop QA report {summary.period_start:%Y-%m-%d} to {summary.period_end:%Y-%m-%d}"
    sections = {
        "Headline numbers": (headline_rows(summary, drift, metrics), ["Metric", "Value"]),
        "Route counts": ([[r, str(n)] for r, n in metrics.routes.items()], ["Route", "Decisions"]),
        "Review latency and SLA": (latency_rows(metrics), LATENCY_HEADER),
        "Model confidence": (confidence_rows(metrics), ["n", "mean", "p10", "median", "p90"]),
        "Alerts": (alert_rows(alerts), ["Rule", "Scope", "At", "Message"]),
    }
    # Relative, so the report folder can be copied or served as a whole.
    drift_link = os.path.relpath(drift.html_path, out_dir) if drift else None
    png = plot_png(metrics)
    (out_dir / f"{stem}.png").write_bytes(png)
    (out_dir / f"{stem}.md").write_text(render_markdown(title, sections, f"{stem}.png", drift_link))
    out = out_dir / f"{stem}.html"
    out.write_text(render_html(title, sections, png, drift_link))
    return out
