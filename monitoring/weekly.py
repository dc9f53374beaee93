"""The weekly QA report: what the QA meeting reads (SPEC), from one week of the store against
the week before it (`report.weekly_days`).

`weekly_report` turns what `monitoring.qa_data` read into numbers (`WeeklyReport`, kept as JSON
beside the report); `weekly_document` lays them out with their pictures for HTML, Markdown and
PDF (`monitoring.document`, `monitoring.pdf`).
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from fraudloop.policy import Policy
from monitoring import human_review as hr
from monitoring import qa_plots, week_events
from monitoring.document import Block, Code, Document, Picture, Section, Table, Text
from monitoring.exploration import AuditEstimate, MissEstimate, estimate_audit, estimate_misses
from monitoring.formatting import count, interval, num, pct, relative_change, share_change
from monitoring.maturity import Estimate, WeekMaturity, cbpe, flagged, mean_abs_error, week_maturity
from monitoring.metrics import override_rate
from monitoring.model_quality import ModelQuality, Rate, model_quality
from monitoring.outcomes import DECLINED, FRAUD, outcomes
from monitoring.qa_data import Period, Sample, WeeklyData
from monitoring.segments import ERROR_COLUMNS, error_rows, segment_columns

ROUTE_SHARES = {"auto_allow": "auto-allowed", "auto_block": "auto-blocked"}
QUEUE_STEP = timedelta(hours=1)  # queue length is sampled hourly over the week


class Headline(BaseModel):
    decisions: int
    allow_share: float | None
    block_share: float | None
    review_share: float | None
    fraud_caught: int  # declined and known to be fraud
    amount_prevented: float
    expected_fraud_caught: float  # sum of the declined payments' scores
    expected_amount_prevented: float  # ... times their amounts
    override_rate: float | None
    sla_compliance: float | None
    decisions_per_second: float
    busiest_hour_per_second: float


class WeeklyReport(BaseModel):
    start: datetime
    end: datetime
    policy_version: str
    headline: Headline
    previous: Headline
    quality: ModelQuality
    misses: list[MissEstimate]
    audit: list[AuditEstimate]  # the post-verify sample drawn this week (answers coming in)
    audit_before: list[AuditEstimate]  # ... and the week before (its answers are in)
    errors: list[dict[str, object]]  # rows of `segments.ERROR_COLUMNS`
    latency: list[hr.QueueLatency]
    overrides_by_queue: list[tuple[str, Rate]]
    overrides_by_direction: list[tuple[str, int]]
    overrides_by_reviewer: list[tuple[str, Rate]]
    signoff_agreement: Rate
    reviewer_checks: list[hr.ReviewerCheck]
    escalations: list[hr.Escalations]
    queue_load: list[hr.QueueLoad]
    alerts: list[list[str]]
    model_moves: list[list[str]]
    pages: list[list[str]]
    policy_changes: list[week_events.PolicyChange]
    model_versions: dict[str, int]
    champion: str | None
    estimate: Estimate
    maturity: list[WeekMaturity]
    notes: list[str]


def sla_queues(policy: Policy) -> list[str]:
    """The queues whose SLA is a commitment: those a breach escalates (not label requests)."""
    return [name for name, q in policy.queues.items() if q.escalate_on_breach]


def headline(period: Period, outcome: pd.Series, policy: Policy) -> Headline:
    d = period.decisions
    n = len(d)
    routes = d["route"].astype(str)
    declined = d["final_decision"].isin(DECLINED)
    caught = declined & (outcome == FRAUD)
    score = d["score"].fillna(1.0)  # the fallback rules declined without a score: count it whole
    committed = period.cases[period.cases["queue"].isin(sla_queues(policy))]
    rows = hr.latency(committed, policy, period.start, period.end)
    tier_rows = [r for r in rows if r.queue.startswith("Tier ")]
    on_time = sum(r.on_time for r in tier_rows)
    judged = sum(r.closed + r.open_overdue for r in tier_rows)
    seconds = (period.end - period.start).total_seconds()
    hourly = d["tx_datetime"].dt.floor("h").value_counts()
    return Headline(
        decisions=n,
        allow_share=float((routes == "auto_allow").mean()) if n else None,
        block_share=float((routes == "auto_block").mean()) if n else None,
        review_share=float(routes.str.endswith("_review").mean()) if n else None,
        fraud_caught=int(caught.sum()),
        amount_prevented=float(d.loc[caught, "amount"].sum()),
        expected_fraud_caught=float(score[declined].sum()),
        expected_amount_prevented=float((score * d["amount"])[declined].sum()),
        override_rate=override_rate(d).rate,
        sla_compliance=on_time / judged if judged else None,
        decisions_per_second=n / seconds if seconds else 0.0,
        busiest_hour_per_second=float(hourly.max()) / 3600 if len(hourly) else 0.0,
    )


def _outcome(period: Period, policy: Policy, known_by: datetime) -> pd.Series:
    return outcomes(
        period.decisions, period.labels, known_by, policy.learning.chargeback_delay_days
    )


def weekly_report(
    data: WeeklyData,
    policy: Policy,
    as_of: datetime,
    policies_dir: Path,
    champion: str | None,
) -> WeeklyReport:
    """Every number of the week; outcomes as known at `as_of` (both weeks)."""
    r = policy.report
    level = r.confidence
    week, previous, segments, earlier = data.week, data.previous, data.segments, data.earlier
    outcome = _outcome(week, policy, as_of)
    misses = estimate_misses(week.exploration, policy.active_learning.estimate_confidence)
    seg = segment_columns(
        week.decisions,
        segments.first_seen,
        segments.pair_first,
        segments.terminal_risk,
        r.segments,
    )
    errors = error_rows(week.decisions["final_decision"], outcome, seg)
    decided = hr.decided_cases(week.cases, week.start, week.end)
    delay = policy.learning.chargeback_delay_days
    horizon = delay + r.weekly_days
    maturity = [
        week_maturity(s.rows, s.start, s.end, as_of, s.decisions, delay, horizon)
        for s in earlier
        if s.decisions
    ]
    scored = week.decisions[week.decisions["score"].notna()]
    load, _ = hr.queue_load(week.cases, week.start, week.end, QUEUE_STEP)
    return WeeklyReport(
        start=week.start,
        end=week.end,
        policy_version=policy.version,
        headline=headline(week, outcome, policy),
        previous=headline(previous, _outcome(previous, policy, as_of), policy),
        quality=model_quality(week.decisions, outcome, misses, level, r.reliability_bins),
        misses=misses,
        audit=estimate_audit(week.audit, level),
        audit_before=estimate_audit(previous.audit, level),
        errors=errors.to_dict("records"),
        latency=hr.latency(week.cases, policy, week.start, week.end),
        overrides_by_queue=hr.overrides_by(decided, "queue", level),
        overrides_by_direction=hr.overrides_by_direction(decided),
        overrides_by_reviewer=hr.overrides_by(decided, "reviewer", level),
        signoff_agreement=hr.signoff_agreement(week.cases, week.start, week.end, level),
        reviewer_checks=hr.approvals_against_chargebacks(
            data.reviewer_cases,
            data.reviewer_labels,
            as_of - timedelta(days=r.reviewer_days),
            as_of,
            delay,
            level,
        ),
        escalations=hr.escalations(week.cases, week.start, week.end),
        queue_load=load,
        alerts=week_events.alert_rows(week.events),
        model_moves=week_events.move_rows(week.events),
        pages=week_events.page_rows(week.events),
        policy_changes=week_events.policy_changes(week.decisions, data.policy_before, policies_dir),
        model_versions={
            str(k): int(v)
            for k, v in week.decisions["model_version"].astype(str).value_counts().items()
        },
        champion=champion,
        estimate=cbpe(scored["score"], flagged(scored)),
        maturity=maturity,
        notes=sampling_notes(earlier, r.sample_rows),
    )


def sampling_notes(earlier: list[Sample], rows: int) -> list[str]:
    notes = [
        "This week's figures use every decision, case and label of the week; outcomes are as "
        "known when the report ran (monitoring.outcomes)."
    ]
    notes.append(
        f"The weekly Evidently run compares random samples of at most {rows:,} scored "
        "decisions per week (policy report.sample_rows): a drift test over a million rows "
        "calls every difference significant, and its cost grows with the rows."
    )
    sampled = [s for s in earlier if s.decisions > rows]
    if sampled:
        notes.append(
            f"Earlier weeks on the label-maturity curve are random samples of {rows:,} "
            f"decisions each ({len(sampled)} of {len(earlier)} weeks were larger): precision "
            "and recall are shares, which a sample of that size measures to within about a "
            "percentage point."
        )
    return notes


# --- the document --------------------------------------------------------------------------


def _headline_rows(now: Headline, before: Headline, target: float) -> list[list[str]]:
    """This week, last week and the change, one row per headline figure (throughput has no
    change column)."""
    money, per_second = partial(num, fmt=",.2f"), partial(num, fmt=".3f")
    figures: list[tuple[str, str, Callable[[Any], str], Callable[[Any, Any], str] | None]] = [
        ("Payments decided", "decisions", count, relative_change),
        ("Auto-allowed share", "allow_share", pct, share_change),
        ("Auto-blocked share", "block_share", pct, share_change),
        ("Sent to review share", "review_share", pct, share_change),
        ("Fraud caught (declined, confirmed fraud)", "fraud_caught", count, relative_change),
        ("Amount prevented (confirmed)", "amount_prevented", money, relative_change),
        ("Fraud caught, expected from scores", "expected_fraud_caught", num, relative_change),
        (
            "Amount prevented, expected from scores",
            "expected_amount_prevented",
            money,
            relative_change,
        ),
        ("Override rate (final decisions)", "override_rate", pct, share_change),
        (f"SLA compliance (target {target:.0%})", "sla_compliance", pct, share_change),
        ("Throughput, payments/s (week mean)", "decisions_per_second", per_second, None),
        ("Throughput, payments/s (busiest hour)", "busiest_hour_per_second", per_second, None),
    ]
    rows = []
    for name, field, shown, change in figures:
        a, b = getattr(now, field), getattr(before, field)
        rows.append([name, shown(a), shown(b), change(a, b) if change else ""])
    return rows


NO_EXPLORATION = (
    "No exploration pick was answered this week (the policy's active_learning.exploration_share"
    " is 0 unless a team turns it on): the audit sample below estimates what the automatic"
    " decisions got wrong."
)


def _quality_section(rep: WeeklyReport, level: float) -> Section:
    q = rep.quality
    rows = [
        ["Decisions", count(q.decisions)],
        ["Outcome known (matured)", count(q.known)],
        ["Still pending (chargeback window open, or case open)", count(q.pending)],
        ["Never known (declined, no label)", count(q.never)],
        ["Precision of auto-blocks (labelled)", interval(q.precision_blocks)],
        ["Precision of reviews (routed to review)", interval(q.precision_reviews)],
        ["Recall on known frauds (declined / known fraud)", interval(q.recall_labels)],
        ["Recall, exploration estimate", pct(q.recall_exploration)],
        ["Frauds missed among auto-allowed, exploration estimate", num(q.missed_estimate)],
        ["Average precision (known outcomes)", num(q.average_precision, ".3f")],
        ["Brier score (known outcomes)", num(q.brier, ".4f")],
    ]
    misses = [
        [
            m.segment,
            count(m.answered),
            count(m.misses),
            pct(m.estimate.rate, 2),
            f"{pct(m.estimate.low)}-{pct(m.estimate.high)}",
        ]
        for m in rep.misses
    ]
    curve = [
        [f"{b.lo:.1f}-{b.hi:.1f}", count(b.n), num(b.mean_score, ".3f"), num(b.fraud_rate, ".3f")]
        for b in q.reliability
    ]
    return Section(
        "Model quality on matured labels",
        [
            Text(
                "Outcomes that have matured: reviews at once, approved payments once the "
                "chargeback delay has passed; auto-blocks only where an exploration pick was "
                f"answered. Intervals are Wilson's at {level:.0%}."
            ),
            Table(["Measure", "Value"], rows),
            Table(
                ["Exploration estimate", "answered", "misses", "estimate", "interval"],
                misses,
                "What the automatic decisions miss (exploration picks weighted by 1 / chance)",
            ),
            *([] if any(m.answered for m in rep.misses) else [Text(NO_EXPLORATION)]),
            Table(["Score bin", "n", "mean score", "fraud rate"], curve, "Reliability curve"),
            Picture("reliability", qa_plots.reliability_curve(q.reliability), "reliability curve"),
        ],
    )


def _audit_section(rep: WeeklyReport, policy: Policy) -> Section:
    sample = policy.report.audit_sample
    weeks = [("this week", rep.audit), ("the week before", rep.audit_before)]
    rows = [
        [
            week,
            a.segment,
            count(round(a.population)),
            count(a.sampled),
            count(a.answered),
            count(a.errors),
            pct(a.estimate.rate, 2),
            f"{pct(a.estimate.low, 2)}-{pct(a.estimate.high, 2)}",
        ]
        for week, estimates in weeks
        for a in estimates
    ]
    return Section(
        "Audit sample (post-verify)",
        [
            Text(
                "After each week a stratified random sample of its automatic decisions no "
                f"person reviewed (policy report.audit_sample: {sample.auto_approve} "
                f"auto-allowed and {sample.auto_reject} auto-blocked) goes to the post-verify "
                "queue; the decisions stand, the answers only measure them. An error is an "
                "answer against the automatic decision; each answer stands for N / answered "
                "decisions of its stratum (unanswered cases taken as missing at random). "
                f"Intervals are Wilson's at {policy.report.confidence:.0%}. The sample drawn "
                "this week is still being answered; the one drawn the week before is the "
                "estimate to read."
            ),
            Table(
                [
                    "Sample drawn",
                    "Stratum",
                    "Decisions",
                    "Sampled",
                    "Answered",
                    "Errors",
                    "Error rate",
                    "interval",
                ],
                rows,
                "Error rate of the automatic decisions, estimated from the audit sample",
            ),
        ],
    )


def _errors_table(rows: list[dict[str, object]]) -> Table:
    def cell(column: str, value: object) -> str:
        if column.endswith("rate"):
            return pct(None if pd.isna(value) else float(value), 2)  # type: ignore[arg-type]
        return str(value) if isinstance(value, str) else count(value)  # type: ignore[arg-type]

    body = [[cell(c, r[c]) for c in ERROR_COLUMNS] for r in rows]
    return Table(ERROR_COLUMNS, body)


def _human_section(rep: WeeklyReport, target: float, length: pd.DataFrame) -> Section:
    latency = [
        [
            r.queue,
            str(r.tier),
            str(r.sla_minutes) if r.sla_minutes else "-",
            count(r.closed),
            num(r.median_minutes),
            num(r.p90_minutes),
            count(r.open_overdue),
            pct(r.compliance),
            "" if r.compliance is None else ("met" if r.compliance >= target else "BELOW"),
        ]
        for r in rep.latency
    ]
    checks = [
        [c.reviewer, count(c.approvals), count(c.checked), count(c.charged_back), interval(c.share)]
        for c in rep.reviewer_checks
    ]
    esc = [
        [
            e.reason,
            count(e.escalated),
            count(e.resolved),
            num(e.median_hours, ".2f"),
            num(e.p90_hours, ".2f"),
        ]
        for e in rep.escalations
    ]
    load = [
        [
            q.queue,
            count(q.opened),
            count(q.closed),
            num(q.mean_open),
            count(q.max_open),
            count(q.open_at_end),
            num(q.closed_per_day),
        ]
        for q in rep.queue_load
    ]
    return Section(
        "Human review",
        [
            Table(
                [
                    "Queue",
                    "Tier",
                    "SLA min",
                    "Closed",
                    "Median min",
                    "p90 min",
                    "Open overdue",
                    "SLA compliance",
                    f"vs {target:.0%}",
                ],
                latency,
                "Latency and SLA compliance per queue and tier (Tier 2 and second sign-off "
                "included; an open case past due counts as a breach)",
            ),
            Picture("latency", qa_plots.latency_against_sla(rep.latency), "latency against SLA"),
            Table(
                ["Queue", "Override rate"],
                [[k, interval(v)] for k, v in rep.overrides_by_queue],
                "Overrides by queue (a case's decision against the model's recommendation)",
            ),
            Table(
                ["Direction", "Cases"],
                [[k, count(v)] for k, v in rep.overrides_by_direction],
                "Overrides by direction",
            ),
            Table(
                ["Reviewer", "Override rate"],
                [[k, interval(v)] for k, v in rep.overrides_by_reviewer],
                "Overrides by reviewer",
            ),
            Table(
                ["Second sign-offs decided", "Agreed with the first", "Agreement"],
                [
                    [
                        count(rep.signoff_agreement.n),
                        count(rep.signoff_agreement.hits),
                        interval(rep.signoff_agreement),
                    ]
                ],
                "First against second sign-off",
            ),
            Table(
                ["Reviewer", "Approvals", "Outcome known", "Charged back", "Share"],
                checks,
                "Each reviewer's approvals against the chargebacks that arrived later",
            ),
            Table(
                ["Why", "Escalated", "Resolved", "Median h to final decision", "p90 h"],
                esc,
                "Escalations and time to resolution",
            ),
            Table(["Time", "Transaction", "Why"], rep.pages, "Tier 3 pages"),
            Table(
                [
                    "Queue",
                    "Opened",
                    "Closed",
                    "Mean open",
                    "Max open",
                    "Open at end",
                    "Closed per day",
                ],
                load,
                "Queue length and throughput (hourly samples)",
            ),
            Picture("queues", qa_plots.queue_length(length), "open cases per queue"),
        ],
    )


def _maturity_section(rep: WeeklyReport) -> Section:
    e = rep.estimate
    rows = [
        [
            f"{w.start:%Y-%m-%d}",
            count(w.decisions),
            count(w.sampled),
            pct(w.estimate.precision),
            pct(w.realised[-1].precision),
            share_change(w.estimate.precision, w.realised[-1].precision),
            pct(w.estimate.recall),
            pct(w.realised[-1].recall),
            share_change(w.estimate.recall, w.realised[-1].recall),
            pct(w.realised[-1].known_share),
            str(w.realised[-1].lag_days),
        ]
        for w in rep.maturity
    ]
    blocks: list[Block] = [
        Text(
            "This week's precision and recall of what the model flagged (blocked or sent to a "
            "person), estimated from the calibrated scores alone (CBPE): "
            f"precision {pct(e.precision)}, recall {pct(e.recall)}, "
            f"{num(e.expected_frauds)} frauds expected among {count(e.scored)} scored payments."
        ),
        Table(
            [
                "Week from",
                "Decisions",
                "Sampled",
                "Precision CBPE",
                "realised",
                "error",
                "Recall CBPE",
                "realised",
                "error",
                "Outcomes known",
                "Days matured",
            ],
            rows,
            "Earlier weeks: the same estimate beside the realised value as labels matured",
        ),
        Text(
            "Mean absolute error of the estimate over these weeks: precision "
            f"{pct(mean_abs_error(rep.maturity, 'precision_error'))}, recall "
            f"{pct(mean_abs_error(rep.maturity, 'recall_error'))}."
        ),
    ]
    if rep.maturity:
        blocks.append(Picture("maturity", qa_plots.maturity_curve(rep.maturity), "label maturity"))
    return Section("Label maturity: estimated against realised", blocks)


def _events_section(rep: WeeklyReport) -> Section:
    blocks: list[Text | Table | Code] = [
        Table(
            ["Time", "", "Rule", "Scope", "Value", "Threshold", "Message"],
            rep.alerts,
            "Alerts fired and resolved",
        ),
        Table(
            ["Time", "Event", "Version", "Previous champion", "Actor", "Reason"],
            rep.model_moves,
            "Promotions and rollbacks",
        ),
        Table(
            ["Version", "Decisions"],
            [[k, count(v)] for k, v in rep.model_versions.items()],
            f"Model versions that decided this week (champion now: {rep.champion or 'n/a'})",
        ),
        Table(
            ["Policy version", "Previous", "First decision"],
            [[c.version, c.previous or "-", c.first_decision] for c in rep.policy_changes],
            "Policy changes",
        ),
    ]
    blocks += [Code(c.diff) for c in rep.policy_changes if c.diff]
    return Section("Alerts, promotions and policy changes", list(blocks))


def weekly_document(
    rep: WeeklyReport, week: Period, policy: Policy, drift: list[Section]
) -> Document:
    """The report's sections in reading order; `drift` are the Evidently sections
    (`monitoring.evidently_runs.drift_sections`)."""
    target = policy.report.sla_target
    errors = pd.DataFrame(rep.errors, columns=ERROR_COLUMNS)
    _, length = hr.queue_load(week.cases, week.start, week.end, QUEUE_STEP)
    sections = [
        Section(
            "Headline",
            [
                Table(
                    ["Measure", "This week", "Week before", "Change"],
                    _headline_rows(rep.headline, rep.previous, target),
                ),
                Picture("volumes", qa_plots.daily_volumes(week.decisions), "daily decisions"),
                Picture("scores", qa_plots.score_distribution(week.decisions), "score by route"),
            ],
        ),
        _quality_section(rep, policy.report.confidence),
        _audit_section(rep, policy),
        Section(
            "False positives and negatives by segment",
            [
                Text(
                    "On the final decision: a false decline is a declined payment found "
                    "legitimate, a miss an approved payment found fraud, each over the known "
                    "outcomes of its kind. Segments and bands: policy report.segments."
                ),
                _errors_table(rep.errors),
                Picture("segments", qa_plots.segment_errors(errors), "segment error rates"),
            ],
        ),
        _human_section(rep, target, length),
        _maturity_section(rep),
        *drift,
        _events_section(rep),
        Section("How this was computed", [Text(n) for n in rep.notes]),
    ]
    return Document(
        title=f"fraudloop weekly QA report {rep.start:%Y-%m-%d} to {rep.end:%Y-%m-%d}",
        subtitle=f"policy {rep.policy_version}; generated for the week ending "
        f"{rep.end:%Y-%m-%d %H:%M} UTC",
        sections=sections,
    )
