"""The pictures the QA meeting would rather look at than read, each as PNG bytes.

Matplotlib's object API (`Figure`, no pyplot): nothing global, safe in a flow's worker thread.
"""

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from monitoring.human_review import QueueLatency
from monitoring.maturity import WeekMaturity
from monitoring.model_quality import ReliabilityBin

SCORE_BINS = np.linspace(0.0, 1.0, 21)
DPI = 90


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def daily_volumes(decisions: pd.DataFrame) -> bytes:
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax = fig.subplots()
    table = pd.crosstab(
        decisions["decided_at"].dt.strftime("%m-%d"), decisions["route"].astype(str)
    )
    bottom = np.zeros(len(table))
    for i, route in enumerate(table.columns):
        ax.bar(table.index, table[route], bottom=bottom, color=f"C{i}", label=route)
        bottom += table[route].to_numpy()
    ax.set(title="Daily decisions by route", ylabel="decisions")
    if len(table.columns):
        ax.legend(fontsize="small")
    return _png(fig)


def score_distribution(decisions: pd.DataFrame) -> bytes:
    """Each route's share per score bin, so a small review queue shows beside the bulk."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax = fig.subplots()
    for i, (route, group) in enumerate(decisions.groupby(decisions["route"].astype(str))):
        counts = np.histogram(group["score"].dropna(), bins=SCORE_BINS)[0]
        ax.stairs(counts / max(counts.sum(), 1), SCORE_BINS, color=f"C{i}", label=str(route))
    ax.set(title="Score distribution by route", xlabel="fraud score", ylabel="share of route")
    ax.legend(fontsize="small")
    return _png(fig)


def latency_against_sla(rows: Sequence[QueueLatency]) -> bytes:
    queues = [r for r in rows if r.sla_minutes and r.closed]
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(queues))
    ax.bar(x - 0.2, [r.median_minutes or 0 for r in queues], 0.4, label="median")
    ax.bar(x + 0.2, [r.p90_minutes or 0 for r in queues], 0.4, label="p90")
    ax.scatter(x, [r.sla_minutes for r in queues], marker="_", s=900, color="k", label="SLA")
    ax.set_xticks(x, [f"{r.queue}\n(Tier {r.tier})" for r in queues], fontsize="small")
    ax.set(title="Review latency per queue against its SLA", ylabel="minutes")
    ax.set_yscale("symlog")
    ax.legend(fontsize="small")
    return _png(fig)


def segment_errors(table: pd.DataFrame) -> bytes:
    """False-decline and miss rates per band, one panel per segment."""
    segments = list(dict.fromkeys(table["segment"]))
    fig = Figure(figsize=(11, 2.4 * len(segments)), layout="constrained")
    axes = fig.subplots(len(segments), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, segments, strict=True):
        rows = table[table["segment"] == name]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, rows["false-decline rate"].fillna(0), 0.4, label="false-decline rate")
        ax.bar(x + 0.2, rows["miss rate"].fillna(0), 0.4, label="miss rate")
        ax.set_xticks(x, rows["band"], fontsize="small")
        ax.set_title(name, fontsize="medium")
    axes[0].legend(fontsize="small")
    return _png(fig)


def reliability_curve(bins: Sequence[ReliabilityBin], title: str = "Reliability") -> bytes:
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.subplots()
    seen = [b for b in bins if b.n]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    ax.plot(
        _nan([b.mean_score for b in seen]),
        _nan([b.fraud_rate for b in seen]),
        marker="o",
        label="observed",
    )
    ax.set(title=title, xlabel="mean score in bin", ylabel="fraud rate", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize="small")
    return _png(fig)


def maturity_curve(weeks: Sequence[WeekMaturity]) -> bytes:
    """Left: each week's estimate beside its latest realised value. Right: realised recall
    day by day after the week ended, as its labels matured."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    names = [f"{w.start:%m-%d}" for w in weeks]
    x = np.arange(len(weeks))
    for i, (metric, marker) in enumerate((("precision", "o"), ("recall", "s"))):
        est = [getattr(w.estimate, metric) for w in weeks]
        real = [getattr(w.realised[-1], metric) for w in weeks]
        left.plot(
            x, _nan(est), marker=marker, linestyle="--", color=f"C{i}", label=f"{metric}, CBPE"
        )
        left.plot(x, _nan(real), marker=marker, color=f"C{i}", label=f"{metric}, realised")
    left.set_xticks(x, names, fontsize="small")
    left.set(title="Estimated (scores only) vs realised", xlabel="week from", ylim=(0, 1))
    left.legend(fontsize="x-small")
    for i, w in enumerate(weeks):
        lags = [p.lag_days for p in w.realised]
        right.plot(lags, _nan([p.recall for p in w.realised]), color=f"C{i}", label=names[i])
    right.set(title="Realised recall as labels matured", xlabel="days after the week", ylim=(0, 1))
    right.legend(fontsize="x-small")
    return _png(fig)


def queue_length(length: pd.DataFrame) -> bytes:
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    for i, queue in enumerate(length.columns):
        ax.plot(length.index, length[queue], color=f"C{i}", label=queue)
    ax.set(title="Open review cases per queue", ylabel="open cases")
    ax.tick_params(axis="x", labelrotation=30, labelsize="small")
    if len(length.columns):
        ax.legend(fontsize="small")
    return _png(fig)


def cohort_gaps(rows: pd.DataFrame, metric: str, title: str) -> bytes:
    """One bar per cohort band, grouped by segment (the monthly bias checks)."""
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    ax = fig.subplots()
    labels = [f"{s}: {b}" for s, b in zip(rows["segment"], rows["band"], strict=True)]
    codes = pd.factorize(rows["segment"])[0]
    ax.bar(np.arange(len(rows)), rows[metric].fillna(0), color=[f"C{c}" for c in codes])
    ax.set_xticks(np.arange(len(rows)), labels, rotation=60, ha="right", fontsize="x-small")
    ax.set(title=title, ylabel=metric)
    return _png(fig)


def _nan(values: Sequence[float | None]) -> list[float]:
    return [np.nan if v is None else v for v in values]
