"""What the replay's days add up to: the JSON, the HTML page with the daily curves, MLflow.

Strategies are compared with `static` by the paired daily difference of CP@100 (the same day,
the same seed): the spread over seeds is far smaller than day-to-day noise, so the standard
error is taken over the days.
"""

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.replay import DELAYED, STATIC, weekly_misses
from fraudloop import tracking

EXPERIMENT = "replay-benchmark"
RECOVERY_SHARE = 0.9  # recovered: back within 10 % of the pre-drift CP@100 / ceiling ratio
RECOVERY_SMOOTHING_DAYS = 3

LEGEND = (
    "Ceiling: compromised cards not yet blocked / budget, at most 1. With chargebacks: the same"
    " without the cards whose every fraud of the day is at a terminal compromised for less than"
    " the chargeback delay, which only a label on that terminal's payments can reveal."
)

Results = dict[int, dict[str, pd.DataFrame]]  # seed -> arm -> daily records


def _paired(
    results: Results,
    name: str,
    weeks: slice | None = None,
    baseline: str = STATIC,
    column: str = "cp100",
    digits: int = 4,
) -> tuple[float | None, float | None]:
    """Mean and standard error of the daily difference of `column` with `baseline` (None
    without two days to compare). Each day's difference is first averaged over the seeds: the
    seeds replay the same days, so they are not independent samples of them."""
    diffs = []
    for arms in results.values():
        d = arms[name][column].to_numpy() - arms[baseline][column].to_numpy()
        week = arms[name]["day"].to_numpy() // 7
        if weeks is not None:
            d = d[(week >= weeks.start) & (week < weeks.stop)]
        diffs.append(d)
    d = np.mean(diffs, axis=0)
    if len(d) < 2:  # noqa: PLR2004 - a standard error needs two days
        return None, None
    return round(float(d.mean()), digits), round(float(d.std(ddof=1) / math.sqrt(len(d))), digits)


def recovery_days(daily: pd.DataFrame, drift_day: int) -> int | None:
    """Days after `drift_day` until the CP@100 / ceiling ratio (a mean over up to 3 days since
    the drift) is back within 10 % of its pre-drift mean; None if never within the replay."""
    ratio = (daily["cp100"] / daily["ceiling"].where(daily["ceiling"] > 0)).fillna(0.0)
    after = (daily["day"] >= drift_day).to_numpy()
    before = ratio[~after].mean()
    smooth = ratio[after].rolling(RECOVERY_SMOOTHING_DAYS, min_periods=1).mean()
    back = daily.loc[after, "day"][(smooth >= RECOVERY_SHARE * before).to_numpy()]
    return None if back.empty else int(back.iloc[0]) - drift_day


def summary(results: Results, default: str, drift_day: int | None = None) -> dict[str, Any]:
    """The benchmark's JSON: per strategy its CP@100 (mean, by week, ceiling, and the ceiling
    with chargebacks where the data tells it), what it caught and prevented, the spread over
    seeds and the paired differences with `static` (all days, weeks 2-4) and with `delayed`
    (the loop without its reviews' labels), for CP@100 and for the frauds caught a day."""
    names = list(next(iter(results.values())))
    out: dict[str, Any] = {"default": default, "seeds": sorted(results), "strategies": {}}
    for name in names:
        runs = [arms[name] for arms in results.values()]
        both = pd.concat(runs)
        by_week = both.groupby(both["day"] // 7)
        means = [float(r["cp100"].mean()) for r in runs]
        mean, se = _paired(results, name)
        late_mean, late_se = _paired(results, name, slice(1, 4))
        delayed_mean, delayed_se = _paired(results, name, baseline=DELAYED)
        entry: dict[str, Any] = {
            "cp100_mean": round(float(np.mean(means)), 4),
            "cp100_by_week": [round(float(v), 4) for v in by_week["cp100"].mean()],
            "ceiling_mean": round(float(both["ceiling"].mean()), 4),
            "ceiling_by_week": [round(float(v), 4) for v in by_week["ceiling"].mean()],
            "fraud_caught": float(np.mean([r["fraud_caught"].sum() for r in runs])),
            "amount_prevented": round(
                float(np.mean([r.attrs["amount_prevented"] for r in runs])), 2
            ),
            "reviews": float(np.mean([r["reviews"].sum() for r in runs])),
            "repeat_reviews": float(np.mean([r["repeat_reviews"].sum() for r in runs])),
            "models_promoted": float(np.mean([r["promoted"].sum() for r in runs])),
            "seed_spread": round(float(np.std(means, ddof=1)), 4) if len(means) > 1 else 0.0,
            "vs_static_daily_mean": mean,
            "vs_static_daily_se": se,
            "vs_static_weeks_2_4_mean": late_mean,
            "vs_static_weeks_2_4_se": late_se,
            "vs_delayed_daily_mean": delayed_mean,
            "vs_delayed_daily_se": delayed_se,
        }
        for baseline in (STATIC, DELAYED):  # frauds caught a day, paired as CP@100 is
            caught = _paired(results, name, baseline=baseline, column="fraud_caught", digits=1)
            entry[f"caught_vs_{baseline}_daily_mean"], entry[f"caught_vs_{baseline}_daily_se"] = (
                caught
            )
        if "chargeback_ceiling" in both:
            entry["chargeback_ceiling_mean"] = round(float(both["chargeback_ceiling"].mean()), 4)
            entry["chargeback_ceiling_by_week"] = [
                round(float(v), 4) for v in by_week["chargeback_ceiling"].mean()
            ]
        misses = weekly_misses(runs[0])
        if misses:
            entry["exploration_missed_by_week"] = [
                {k: round(v, 1) if isinstance(v, float) else v for k, v in m.items()}
                for m in misses
            ]
        if drift_day is not None:
            entry["recovery_days"] = recovery_days(runs[0], drift_day)
        out["strategies"][name] = entry
    return out


def curves_png(results: Results) -> bytes:
    """Daily CP@100 of each strategy (first seed) and each one's ceiling, dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = next(iter(results.values()))
    fig, ax = plt.subplots(figsize=(10, 5))
    for i, (name, daily) in enumerate(arms.items()):
        color = f"C{i}"
        ax.plot(daily["day"] + 1, daily["cp100"], color=color, label=name)
        ax.plot(daily["day"] + 1, daily["ceiling"], color=color, linestyle=":", linewidth=1)
    ax.set(xlabel="replay day", ylabel="CP@100", title="CP@100 per day (dotted: its ceiling)")
    ax.legend(ncol=3, fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def paired(entry: dict[str, Any], key: str) -> str:
    """`mean ± se` of a paired difference, or n/a."""
    mean, se = entry[f"{key}_mean"], entry[f"{key}_se"]
    return "n/a" if mean is None else f"{mean:+.4f} ± {se:.4f}"


def chargeback_ceiling(entry: dict[str, Any]) -> str:
    """The mean ceiling with chargebacks, or n/a where the data names no fraud scenarios."""
    value = entry.get("chargeback_ceiling_mean")
    return "n/a" if value is None else f"{value:.3f}"


def page(result: dict[str, Any], png: bytes, title: str) -> str:
    """One self-contained HTML page: the table, the daily curves, exploration's estimates."""
    head = (
        "<tr><th>strategy</th><th>CP@100</th><th>by week</th><th>ceiling</th>"
        "<th>ceiling with chargebacks</th>"
        "<th>vs static (daily mean ± se)</th><th>weeks 2-4 vs static</th><th>vs delayed</th>"
        "<th>fraud caught</th><th>amount prevented</th><th>promoted</th></tr>"
    )
    rows = []
    for name, s in result["strategies"].items():
        mark = " (default)" if name == result["default"] else ""
        rows.append(
            "<tr>"
            f"<td>{html.escape(name)}{mark}</td><td>{s['cp100_mean']:.3f}</td>"
            f"<td>{' / '.join(f'{v:.3f}' for v in s['cp100_by_week'])}</td>"
            f"<td>{s['ceiling_mean']:.3f}</td><td>{chargeback_ceiling(s)}</td>"
            f"<td>{paired(s, 'vs_static_daily')}</td><td>{paired(s, 'vs_static_weeks_2_4')}</td>"
            f"<td>{paired(s, 'vs_delayed_daily')}</td>"
            f"<td>{s['fraud_caught']:.0f}</td><td>{s['amount_prevented']:,.0f}</td>"
            f"<td>{s['models_promoted']:.0f}</td></tr>"
        )
    misses = []
    for name, s in result["strategies"].items():
        for m in s.get("exploration_missed_by_week", []):
            misses.append(
                f"<tr><td>{html.escape(name)}</td><td>{m['week']}</td><td>{m['estimate']:.0f}"
                f" [{m['low']:.0f}, {m['high']:.0f}]</td><td>{m['truth']:.0f}</td></tr>"
            )
    explore = (
        "<h2>Exploration: compromised cards the strategy missed, estimated against the truth</h2>"
        "<table><tr><th>strategy</th><th>week</th><th>estimate [interval]</th><th>truth</th></tr>"
        + "".join(misses)
        + "</table>"
        if misses
        else ""
    )
    image = base64.b64encode(png).decode()
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child"
        "{text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table>{head}{''.join(rows)}</table>"
        f"<p>{LEGEND}</p>"
        f"<h2>Daily curves</h2><img alt='CP@100 per day' src='data:image/png;base64,{image}'>"
        f"{explore}</body></html>"
    )


def log_to_mlflow(
    result: dict[str, Any],
    params: dict[str, Any],
    page_html: str,
    tracking_uri: str,
    artifact_root: Path | None,
) -> str:
    """One MLflow run in the `replay-benchmark` experiment: the parameters, each strategy's
    headline metrics, the JSON and the page; returns the run id."""
    import mlflow

    experiment_id = tracking.experiment_id(tracking_uri, EXPERIMENT, artifact_root)
    mlflow.set_tracking_uri(tracking_uri)
    name = f"{params['start']} +{params['days']}d"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params(params)
        for arm, s in result["strategies"].items():
            key = arm.replace("@", ":")  # `top_score@matured`: MLflow refuses an @ in a name
            figures = {
                f"{key}.cp100_mean": s["cp100_mean"],
                f"{key}.vs_static_daily_mean": s["vs_static_daily_mean"],
                f"{key}.fraud_caught": s["fraud_caught"],
            }
            mlflow.log_metrics({k: v for k, v in figures.items() if v is not None})
        mlflow.log_dict(result, "replay.json")
        mlflow.log_text(page_html, "replay.html")
    return run.info.run_id


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
