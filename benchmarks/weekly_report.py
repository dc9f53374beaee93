"""`fraudloop bench weekly-report`: the weekly QA report over a busy week (issue 14: 1.5 million
transactions under 2 minutes and 3 GiB).

The scratch store (`benchmarks.weekly_store`) and, unless left out, a champion registered in
the scratch home's MLflow (so the daily drift step runs as in production) are built untimed.
Then `fraudloop report weekly --as-of …` runs exactly as a person runs it, in a fresh process
pointed at the scratch home: every output (HTML, PDF, Markdown, JSON, the Evidently snapshot,
the MLflow run), and its wall time and peak RSS are that process's own. Per-stage times are
read from the timestamps of the flow's own log lines (each task's end), so the report code has
no hook for the benchmark.
"""

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from sqlalchemy import func, select

from benchmarks import weekly_store as store
from benchmarks.common import NAME, champion, make_world, scratch_dir
from fraudloop import audit
from fraudloop.policy import Policy
from fraudloop.settings import get_settings
from fraudloop.storage import Decision, Label, ReviewTask, migrate, open_session
from monitoring.evidently_workspace import workspace_dir
from pipeline.route import ModelInfo

AS_OF = datetime(2026, 11, 30)  # a Monday midnight: the report's week is the 7 days before
# `HH:MM:SS.mmm | LEVEL | Task run 'read_week-1a2' - Finished in state Completed()`
FINISHED = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+\s*\| (Task|Flow) run '([\w-]+?)(?:-\w{3})?' - "
    r"Finished in state (\w+)"
)
STARTUP, FLOW_END, EXIT = "startup (imports, Prefect's temporary API)", "flow end", "exit"
BEGAN = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \| \w+\s*\| Flow run '[\w-]+' - Beginning")
SAMPLE_SECONDS = 0.25  # the process tree's memory is sampled this often (beside ru_maxrss)


def run(
    rows: int,
    weeks: int,
    db_url: str | None,
    policy: Policy,
    chunk: int,
    with_champion: bool,
    progress: Callable[[str, int, int], None],
    after_drift_check: bool = True,
) -> dict[str, Any]:
    """Build the store (untimed), then time the report; `progress(what, done, total)`. With
    `after_drift_check`, the day's drift check runs first, untimed, as the schedules run it."""
    shape = store.Shape(rows, weeks, AS_OF, policy.report.weekly_days)
    with scratch_dir() as tmp:
        home = Path(tmp)
        url = db_url or f"sqlite:///{home / 'fraudloop.db'}"
        migrate(url)
        t = time.perf_counter()
        model = ModelInfo(NAME, "1")
        if with_champion:
            progress("training and registering a champion", 0, 1)
            version = champion(make_world(customers=1_000), home).version
            model = ModelInfo(NAME, str(version))
        built = build(url, shape, policy, model, chunk, progress)
        progress("verifying the audit chain", 0, 1)
        with open_session(url) as s:
            chain = audit.verify(s)
        build_seconds = time.perf_counter() - t
        policy_file = get_settings().policy_file.resolve()
        if after_drift_check:  # as scheduled: the day's drift check an hour before the report
            progress("fraudloop report drift (untimed)", 0, 1)
            drift_check = time_report(home, url, AS_OF, policy_file, "drift")
        progress("fraudloop report weekly", 0, 1)
        timed = time_report(home, url, AS_OF, policy_file)
        outputs = report_outputs(home, timed["stdout"])
        counts = {**built.counts, **table_counts(url)}
    return {
        "rows_in_reported_week": counts["in_reported_week"],
        "weeks_stored": weeks,
        "as_of": AS_OF.isoformat(),
        "store": url.split(":", 1)[0],
        "champion": with_champion,
        "after_drift_check": after_drift_check,
        "drift_check_seconds": drift_check["seconds"] if after_drift_check else None,
        "seconds": timed["seconds"],
        "peak_rss_mb": timed["peak_rss_mb"],
        "tree_peak_rss_mb": timed["tree_peak_rss_mb"],
        "stage_seconds": timed["stages"],
        "exit_code": timed["exit_code"],
        "outputs": outputs,
        "store_counts": counts,
        "audit_chain_ok": chain.ok,
        "audit_events": chain.n_events,
        "untimed_build_seconds": round(build_seconds, 1),
        "log_tail": timed["stdout"].splitlines()[-30:] if timed["exit_code"] else [],
        "sample_rows": policy.report.sample_rows,
        "transactions_from": "simulation.world.simulate, tiled worlds of "
        f"{store.CUSTOMERS_PER_WORLD:,} customers; scores drawn per row from the truth",
    }


def build(
    url: str,
    shape: store.Shape,
    policy: Policy,
    model: ModelInfo,
    chunk: int,
    progress: Callable[[str, int, int], None],
) -> store.Built:
    """The store, in the order production writes it: decisions as payments come, the weekly
    audit samples, the reviewers' answers, then the chargebacks that arrived."""
    n_worlds, customers = store.worlds(shape)
    total = round(n_worlds * customers * store.TX_PER_CUSTOMER_WEEK * shape.weeks)
    done = [0]

    def step(what: str, expected: int) -> Callable[[int], None]:
        done[0] = 0

        def advance(n: int) -> None:
            done[0] += n
            progress(what, done[0], max(expected, done[0]))

        return advance

    built = store.store_decisions(url, shape, policy, model, chunk, step("decisions", total))
    store.register_reviewers(url, shape.start)
    store.audit_samples(url, shape, policy, built)
    rng = np.random.default_rng(shape.seed)
    desk = store.Reviewing(policy, shape.as_of, built.frauds, rng)
    cases = built.counts["review_cases_routed"] + built.counts.get("audit_sample_cases", 0)
    store.answer_cases(url, desk, built, step("review answers", cases))
    progress("chargebacks", 0, 1)
    store.chargebacks(url, shape, policy, built, rng)
    return built


def time_report(
    home: Path, url: str, as_of: datetime, policy_file: Path, report: str = "weekly"
) -> dict[str, Any]:
    """`fraudloop report <report>` in its own process against the scratch home: wall time, its
    peak RSS (`ru_maxrss` of that child: its largest process, the report's own), the process
    tree's sampled peak (with Prefect's temporary API server), the stages from its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDLOOP_", "PREFECT_"))}
    env |= {
        "FRAUDLOOP_HOME": str(home),
        "FRAUDLOOP_DB_URL": url,
        "FRAUDLOOP_POLICY_FILE": str(policy_file),
        "PREFECT_HOME": str(home / "prefect"),  # a hand run without `up`: a temporary API
        "COLUMNS": "200",
    }
    argv = [str(Path(sys.executable).parent / "fraudloop"), "report", report]
    argv += ["--as-of", f"{as_of:%Y-%m-%d}"]
    started, wall = time.perf_counter(), datetime.now()  # noqa: DTZ005 - as the log's clock
    child = subprocess.Popen(  # noqa: S603 - our own command
        argv, cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tree_peak = [0]
    watcher = threading.Thread(target=_sample_tree, args=(child.pid, tree_peak), daemon=True)
    watcher.start()
    stdout = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not earlier ones'
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    watcher.join(timeout=2)
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "tree_peak_rss_mb": round(tree_peak[0] / 2**20, 1),
        "stages": stages(stdout, wall, datetime.now()),  # noqa: DTZ005
        "exit_code": child.returncode,
        "stdout": stdout,
    }


def _sample_tree(pid: int, peak: list[int]) -> None:
    try:
        root = psutil.Process(pid)
        while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
            rss = root.memory_info().rss
            for c in root.children(recursive=True):
                try:
                    rss += c.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            peak[0] = max(peak[0], rss)
            time.sleep(SAMPLE_SECONDS)
    except psutil.NoSuchProcess:
        return


def stages(log: str, started: datetime, ended: datetime) -> dict[str, dict[str, Any]]:
    """Each task's time from the previous one's end (the flow runs them one after another),
    from the flow's log timestamps; the first from the flow run's start, which is
    `STARTUP` after the process started; `EXIT` from the flow's end to the process's."""
    began: datetime | None = None
    out: dict[str, dict[str, Any]] = {}

    def since(at: datetime, before: datetime) -> float:
        return round(((at - before) % timedelta(days=1)).total_seconds(), 2)  # past midnight

    def clock(stamp: str) -> datetime:
        return datetime.combine(started.date(), datetime.strptime(stamp, "%H:%M:%S.%f").time())

    for line in log.splitlines():
        if began is None and (m := BEGAN.match(line)):
            began = clock(m.group(1))
            out[STARTUP] = {"seconds": since(began, started), "state": "Completed"}
        elif began is not None and (m := FINISHED.match(line)):
            at = clock(m.group(1))
            name = m.group(3) if m.group(2) == "Task" else FLOW_END
            out[name] = {"seconds": since(at, began), "state": m.group(4)}
            began = at
    if began is not None:
        out[EXIT] = {"seconds": since(ended, began), "state": "Completed"}
    return out


def report_outputs(home: Path, stdout: str) -> dict[str, Any]:
    """The files the report wrote (bytes each), its Evidently snapshots, its MLflow run."""
    reports = home / "reports"
    files = (
        {p.name: p.stat().st_size for p in sorted(reports.glob("*")) if p.is_file()}
        if reports.exists()
        else {}
    )
    snapshots = [p for p in workspace_dir(home).rglob("*") if p.is_file() and "snapshot" in str(p)]
    run = re.search(r"mlflow_run: (\S+)", stdout)
    return {
        "files": files,
        "evidently_snapshot_files": len(snapshots),
        "mlflow_run": run.group(1) if run and run.group(1) != "None" else None,
    }


def table_counts(url: str) -> dict[str, int]:
    with open_session(url) as s:
        return {
            "decisions": s.scalar(select(func.count()).select_from(Decision)) or 0,
            "review_cases": s.scalar(select(func.count()).select_from(ReviewTask)) or 0,
            "labels": s.scalar(select(func.count()).select_from(Label)) or 0,
        }
