"""`fraudloop doctor`: SPEC's launch readiness, one line per item with what to do when it fails.

Each check is a function that returns what it found or raises a `FraudloopError` saying what is
wrong and how to fix it; `checks` runs them all (a check that crashes is a failed check), so one
broken item never hides the others.
"""

import asyncio
import html
import json
import math
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from fraudloop import credentials
from fraudloop.errors import FraudloopError
from fraudloop.policy import (
    SIGNOFF_QUEUE,
    Policy,
    Route,
    decision_table,
    fallback_route,
    load_policy,
    route,
    route_transaction,
)
from fraudloop.settings import Settings

Check = tuple[str, bool, str]

# allow < async review < sync review (a merchant hold) < block; the action a route takes
SEVERITY = {Route.AUTO_ALLOW: 0, Route.ASYNC_REVIEW: 1, Route.SYNC_REVIEW: 2, Route.AUTO_BLOCK: 3}
ACTION = {Route.AUTO_ALLOW: 0, Route.ASYNC_REVIEW: 1, Route.SYNC_REVIEW: 1, Route.AUTO_BLOCK: 2}
GRID = 100  # the router is also checked on every hundredth of score and confidence
# Label Studio settings that must be off for a fraud-review server (`labeling.server.server_env`)
TELEMETRY_OFF = {
    "SENTRY_DSN": ("", "None"),
    "FRONTEND_SENTRY_DSN": ("", "None"),
    "LATEST_VERSION_CHECK": ("False",),
    "COLLECT_ANALYTICS": ("False",),
}
RECENT_PERIODS = 2  # a deployment's last success must be within this many of its periods
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def checks(settings: Settings) -> list[Check]:
    """Every launch-readiness item, in the order an operator fixes them; the server profile's
    own servers after the database, when that is the profile found (`FRAUDLOOP_PROFILE`)."""
    return [
        _check("secrets", lambda: secrets(settings)),
        _check("database", lambda: database(settings)),
        *(server_checks(settings) if settings.profile == "server" else []),
        _check("policy and router", lambda: policy_and_router(settings)),
        _check("reviewers", lambda: reviewers(settings)),
        _check("Label Studio", lambda: labelstudio(settings)),
        _check("Label Studio telemetry", lambda: labelstudio_telemetry(settings)),
        _check("champion", lambda: champion(settings)),
        _check("audit chain", lambda: audit_chain(settings)),
        _check("alert sinks", lambda: alert_sinks(settings)),
        _check("schedules", lambda: schedules(settings)),
    ]


def _check(name: str, probe: Callable[[], str]) -> Check:
    try:
        return name, True, probe()
    except FraudloopError as exc:
        return name, False, str(exc)
    except Exception as exc:  # a check that crashes is a failed check, not a traceback
        return name, False, f"{type(exc).__name__}: {exc}"


def server_checks(settings: Settings) -> list[Check]:
    return [
        _check("profile", lambda: profile(settings)),
        _check("server profile databases", lambda: server_databases(settings)),
        _check("MLflow tracking server", lambda: mlflow_server(settings)),
        _check("Prefect on PostgreSQL", lambda: prefect_database(settings)),
        _check("work pool and workers", lambda: work_pool(settings)),
        _check("Label Studio on PostgreSQL", lambda: labelstudio_database(settings)),
    ]


def profile(settings: Settings) -> str:
    where = _hidden(settings.server_postgres_url)
    return f"server: store, MLflow, Prefect and Label Studio each on PostgreSQL at {where}"


def server_databases(settings: Settings) -> str:
    """Each service's database answers."""
    from flows.profile import SERVICES

    down = []
    for service in SERVICES:
        try:
            _query(settings.server_database(service), "SELECT 1")
        except Exception as exc:  # any driver error: that database is not usable
            down.append(f"{service} ({type(exc).__name__})")
    if down:
        raise FraudloopError(
            f"unreachable: {', '.join(down)}; `fraudloop up --profile server` creates them"
        )
    return ", ".join(f"{settings.server_database_prefix}_{s}" for s in SERVICES)


def mlflow_server(settings: Settings) -> str:
    """The tracking URI is a server that answers, keeping its runs in the profile's database."""
    uri = settings.tracking_uri.rstrip("/")
    if not uri.startswith(("http://", "https://")):
        raise FraudloopError(
            f"the tracking URI is {uri}, not a tracking server; unset "
            "FRAUDLOOP_MLFLOW_TRACKING_URI (the profile's) or point it at one"
        )
    _answers(uri, "MLflow", "`fraudloop up --profile server` starts it")
    versions = _query(settings.server_database("mlflow"), "SELECT count(*) FROM model_versions")
    return f"{uri} answers; {versions} model version(s) in {_hidden(settings.server_database('mlflow'))}"


def prefect_database(settings: Settings) -> str:
    """The Prefect server keeps its state in PostgreSQL."""
    url = settings.prefect_database_url or ""
    if not url.startswith("postgresql"):
        raise FraudloopError(
            f"Prefect's database is {url or 'SQLite'}; unset FRAUDLOOP_PREFECT_DATABASE_URL "
            "(the profile's) and restart it with `fraudloop down` and `fraudloop up`"
        )
    sync = url.replace("+asyncpg", "+psycopg")
    n = _query(sync, "SELECT count(*) FROM deployment")
    return f"{n} deployment(s) in {_hidden(url)}"


def work_pool(settings: Settings) -> str:
    """The pool exists, a worker polls it, and every deployment of the profile runs on it."""
    from flows import server
    from flows.profile import profile_deployments

    pool, url = settings.prefect_work_pool, settings.prefect_api_url
    with server.client(url) as c:
        found = c.read_work_pool(pool)
        online = [
            w.name for w in c.read_workers_for_work_pool(pool) if str(w.status.value) == "ONLINE"
        ]
        elsewhere = []
        for d in profile_deployments(load_policy(settings.policy_file)):
            held = c.read_deployment_by_name(f"{d.flow_name}/{d.name}")
            if held.work_pool_name != pool:
                elsewhere.append(f"{d.flow_name}/{d.name}")
    if not online:
        raise FraudloopError(
            f"no worker polls the work pool {pool}; `fraudloop up --profile server` starts them"
        )
    if elsewhere:
        raise FraudloopError(
            f"not on the work pool {pool}: {', '.join(elsewhere)}; `fraudloop up --profile "
            "server` deploys them there"
        )
    return f"{pool} ({found.type}): {len(online)} worker(s) online, every deployment on it"


def labelstudio_database(settings: Settings) -> str:
    """Label Studio keeps its users, projects and annotations in the profile's database."""
    url = settings.server_database("labelstudio")
    users = _query(
        url,
        "SELECT count(*) FROM htx_user WHERE email = :email",
        email=settings.labelstudio_username,
    )
    if not users:
        raise FraudloopError(
            f"{settings.labelstudio_username} is not a user in {_hidden(url)}: Label Studio "
            "runs on another database; restart it with `fraudloop down` and `fraudloop up "
            "--profile server`"
        )
    projects = _query(url, "SELECT count(*) FROM project")
    return f"{_hidden(url)}: {projects} project(s), {settings.labelstudio_username} a user"


def _query(url: str, sql: str, **params: Any) -> Any:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def _hidden(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def secrets(settings: Settings) -> str:
    settings.require_secrets()
    return f"per-install ({credentials.path(settings.home)} or environment)"


def database(settings: Settings) -> str:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from fraudloop.storage import make_engine, unreachable

    try:
        with make_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise FraudloopError(unreachable(settings.database_url, exc)) from exc
    return settings.database_url.split("@")[-1]


def policy_and_router(settings: Settings) -> str:
    """The policy file loads (every rule, SLA and escalation tier) and the router keeps its
    properties on it."""
    policy = load_policy(settings.policy_file)
    problems = router_problems(policy)
    if problems:
        shown = "; ".join(problems[:3])
        raise FraudloopError(
            f"policy {policy.version}: the router breaks {len(problems)} check(s): {shown}; "
            f"fix the thresholds in {settings.policy_file} (`fraudloop policy explain`)"
        )
    matrix = sorted(policy.escalation.matrix.items())
    tiers = ", ".join(f"Tier {tier}: {len(row.contacts)} contact(s)" for tier, row in matrix)
    return f"{policy.version} ({policy.mode}); router checks pass; escalation matrix: {tiers}"


def router_problems(policy: Policy) -> list[str]:
    """The router's properties (tests/unit/test_router_properties.py) on this policy, at its own
    thresholds, just beside them and on a grid: every point has exactly one row of the decision
    table, which agrees with `route`; a higher score never routes to something milder; with
    the model's confidence (max(s, 1 - s)) allow < review < block; a high-impact amount is never
    auto-allowed, by the model or by the fallback rules; a watch-listed terminal is blocked."""
    points = _probe_points(policy)
    table = decision_table(policy)
    problems = []
    for conf in points:
        routed = [route(score, conf, policy) for score in points]
        for score, got in zip(points, routed, strict=True):
            rows = [r.route for r in table if r.matches(score, conf)]
            if rows != [got]:
                problems.append(f"score {score}, confidence {conf}: table {rows}, router {got}")
        severities = [SEVERITY[r] for r in routed]
        if severities != sorted(severities):
            problems.append(f"a higher score routes to something milder at confidence {conf}")
    actions = [ACTION[route(s, max(s, 1 - s), policy)] for s in points]
    if actions != sorted(actions):
        problems.append("with the model's confidence, a higher score is treated more leniently")
    return problems + _amount_problems(policy, points)


def _amount_problems(policy: Policy, points: list[float]) -> list[str]:
    problems = []
    limit = policy.high_impact.amount_above
    fb = policy.fallback
    amounts = sorted({0.0, *(v for a in (limit, fb.review_amount_above) for v in _beside(a))})
    for amount in (a for a in amounts if a > limit):
        if any(route_transaction(s, 1.0, amount, policy) == Route.AUTO_ALLOW for s in points):
            problems.append(f"the model auto-allows the high-impact amount {amount}")
    for amount in amounts:
        for terminal in [*fb.watchlist_terminals, "not-on-the-watchlist"]:
            got = fallback_route(amount, terminal, policy)
            if amount > min(limit, fb.review_amount_above) and got == Route.AUTO_ALLOW:
                problems.append(f"the fallback rules auto-allow the amount {amount}")
            if terminal in fb.watchlist_terminals and got != Route.AUTO_BLOCK:
                problems.append(f"the fallback rules do not block watch-listed {terminal}")
    return problems


def _probe_points(policy: Policy) -> list[float]:
    cuts = [*policy.fraud.model_dump().values(), *policy.generic.model_dump().values()]
    near = {v for cut in cuts for v in _beside(cut) if 0.0 <= v <= 1.0}
    return sorted(near | {i / GRID for i in range(GRID + 1)})


def _beside(x: float) -> tuple[float, float, float]:
    return math.nextafter(x, -math.inf), x, math.nextafter(x, math.inf)


def reviewers(settings: Settings) -> str:
    """Every queue of the policy can be worked: Tier 1 queues by any registered reviewer, the
    second sign-off by two different ones, Tier 2 by a senior."""
    from sqlalchemy import select

    from fraudloop.storage import Reviewer, open_session
    from labeling.review.cases import ROLES, SENIOR_ROLES

    policy = load_policy(settings.policy_file)
    with open_session(settings.database_url) as session:
        roles = dict(session.execute(select(Reviewer.email, Reviewer.role)).tuples().all())
    staffed = {role: sum(r == role for r in roles.values()) for role in ROLES}
    anyone, seniors = len(roles), sum(staffed[r] for r in SENIOR_ROLES)
    missing = []
    for name, queue in sorted(policy.queues.items()):
        need, have = (1, seniors) if queue.tier == 2 else (1, anyone)  # noqa: PLR2004 - Tier 2
        if name == SIGNOFF_QUEUE:
            need = 2
        if have < need:
            who = "senior reviewer" if queue.tier == 2 else "reviewer"  # noqa: PLR2004 - Tier 2
            missing.append(f"{name} needs {need} {who}(s), has {have}")
    if missing:
        raise FraudloopError(
            "; ".join(missing) + "; register them with `fraudloop reviewers add EMAIL --role …`"
        )
    return f"{anyone} registered ({seniors} senior): every queue has someone to work it"


def labelstudio(settings: Settings) -> str:
    from labeling import server

    if not server.is_up(settings.labelstudio_url):
        raise FraudloopError(
            f"{settings.labelstudio_url} does not answer; `fraudloop up` starts it"
        )
    who = server.check_token(settings.labelstudio_url, settings.labelstudio_token)
    return f"{settings.labelstudio_url}, token logs in as {who}"


def labelstudio_telemetry(settings: Settings) -> str:
    """The server's own settings (its admin's settings page): no update check, no Sentry, no
    analytics, whoever started it and however."""
    found = labelstudio_settings(settings)
    on = [k for k, off in TELEMETRY_OFF.items() if found.get(k, "<missing>") not in off]
    if on:
        shown = ", ".join(f"{k}={found.get(k, '<missing>')!r}" for k in on)
        raise FraudloopError(
            f"Label Studio at {settings.labelstudio_url} reports to outside hosts ({shown}); "
            "restart it with `fraudloop down` and `fraudloop up`, which turn these off"
        )
    return "update check, Sentry and analytics off (" + ", ".join(TELEMETRY_OFF) + ")"


def labelstudio_settings(settings: Settings) -> dict[str, str]:
    """What Label Studio's settings page shows its admin (values as text)."""
    url = settings.labelstudio_url.rstrip("/")
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as browser:
        page = browser.get("/user/login")
        csrf = _CSRF.search(page.text)
        browser.post(
            "/user/login",
            data={
                "email": settings.labelstudio_username,
                "password": settings.labelstudio_password,
                "csrfmiddlewaretoken": csrf.group(1) if csrf else "",
            },
            headers={"Referer": str(page.url)},
        )
        text = browser.get("/version/").text
    shown = json.loads(html.unescape(text.removeprefix("<pre>").removesuffix("</pre>")))
    if "settings" not in shown:
        raise FraudloopError(
            f"Label Studio at {url} shows its settings to its admin only, and "
            f"{settings.labelstudio_username} could not log in: check "
            "FRAUDLOOP_LABELSTUDIO_USERNAME and FRAUDLOOP_LABELSTUDIO_PASSWORD"
        )
    return dict(shown["settings"])


def champion(settings: Settings) -> str:
    """The champion loads from the registry and scores a row."""
    import pandas as pd

    from models.scoring import load_model

    model = load_model(settings.tracking_uri, settings.model_name)
    score = float(model.predict(pd.DataFrame([dict.fromkeys(model.features, 0.0)]))["score"][0])
    if not 0.0 <= score <= 1.0:
        raise FraudloopError(f"{model.name} v{model.version} scored {score}, not a probability")
    return f"{model.name} v{model.version} loads and scores"


def audit_chain(settings: Settings) -> str:
    from fraudloop import audit
    from fraudloop.storage import open_session

    with open_session(settings.database_url) as session:
        result = audit.verify(session)
    if not result.ok:
        raise FraudloopError(f"{result.message()}; `fraudloop audit verify` says more")
    return result.message().splitlines()[0]


def alert_sinks(settings: Settings) -> str:
    """Every configured sink and the Tier 3 paging target answer: a webhook must answer HTTP
    (any status; nothing is posted, which would be an alert) within a few seconds."""
    from fraudloop.alerts import configured_sinks, sink_name

    configured_sinks(settings.alert_sinks)  # refuses what is neither "log" nor a URL
    policy = load_policy(settings.policy_file)
    targets = {sink_name(s): s for s in [*settings.alert_sinks, policy.escalation.page_target]}
    down = []
    for name, target in targets.items():
        if target == "log":
            continue
        try:
            httpx.get(target, timeout=5.0)
        except httpx.HTTPError as exc:
            down.append(f"{name} ({type(exc).__name__})")
    if down:
        raise FraudloopError(
            f"unreachable: {', '.join(down)}; fix FRAUDLOOP_ALERT_SINKS or the policy's "
            "escalation.page_target"
        )
    return ", ".join(targets) + " reachable"


def _answers(url: str, what: str, hint: str) -> None:
    """`url`'s `/health` answers, or an error naming the service and how to start it."""
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        raise FraudloopError(
            f"{what} at {url} does not answer ({type(exc).__name__}); {hint}"
        ) from exc


def schedules(settings: Settings) -> str:
    """Every deployment of `flows.deployments` is on the Prefect server, not paused, with an
    active schedule and a successful run within the last two of its periods."""
    url = os.environ.get("PREFECT_API_URL") or getattr(settings, "prefect_api_url", None)
    if not url:
        raise FraudloopError(
            "not configured: set PREFECT_API_URL to the Prefect server `fraudloop up` starts"
        )
    _answers(
        url,
        "the Prefect API",
        "`fraudloop up` starts the server and the process that runs the deployments",
    )
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import deployments

    expected = deployments(load_policy(settings.policy_file))
    now = datetime.now(UTC)
    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as c:
        problems = [p for d in expected if (p := _deployment_problem(c, d, now)) is not None]
    if problems:
        raise FraudloopError(
            "; ".join(problems) + "; start them with `fraudloop up`, run one with `fraudloop run`"
        )
    return f"{len(expected)} deployments active, each with a recent successful run ({url})"


def _deployment_problem(client: Any, made: Any, now: datetime) -> str | None:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import ObjectNotFound

    name = f"{made.flow_name}/{made.name}"
    try:
        deployment = client.read_deployment_by_name(name)
    except ObjectNotFound:
        return f"{name} is not deployed"
    active = [s for s in deployment.schedules if s.active]
    if deployment.paused or not active:
        return f"{name} has no active schedule"
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
        ),
        sort=FlowRunSort.END_TIME_DESC,
        limit=1,
    )
    if not runs:
        return f"{name} has never completed a run"
    done = runs[0].end_time or runs[0].state.timestamp
    window = RECENT_PERIODS * max(_period(s.schedule) for s in active)
    if now - done > window:
        return f"{name} last succeeded {done:%Y-%m-%d %H:%M} UTC, longer ago than {window}"
    return None


def _period(schedule: Any) -> timedelta:
    """How often a schedule fires: its interval, or the gap between a cron's next two times."""
    interval = getattr(schedule, "interval", None)
    if interval is not None:
        return timedelta(seconds=interval.total_seconds())
    from prefect.server.schemas.schedules import CronSchedule

    cron = CronSchedule(cron=schedule.cron, timezone=schedule.timezone or "UTC")
    first, second = asyncio.run(cron.get_dates(n=2, start=datetime.now(UTC)))
    return timedelta(seconds=(second - first).total_seconds())
