"""Features from the past only, one code path for training and for scoring.

The handbook's 15 features keep its exact semantics (customer windows end at and include the
current transaction; terminal windows are (t - delay - w, t - delay]); fraudloop adds features
that use labels as soon as they are known (reviewer labels arrive within hours, chargebacks
after the delay). A feature at time t uses only transactions ordered before or at the current
one, by (tx_datetime, transaction_id), and only label events with known_at < t.

Everything is vectorised: rows are sorted by (entity, time) and every window is two binary
searches plus a difference of cumulative sums.
"""

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

NS_PER_DAY = 86_400 * 10**9
NS_PER_HOUR = 3_600 * 10**9
FOREVER = np.iinfo(np.int64).max // 4
SATURDAY = 5  # `_weekday`: the weekend is Saturday and Sunday
NIGHT_ENDS_HOUR = 6  # the night is 00:00-06:59

# strict: a model config's `1.5` or `true` is an error, never a day (`models.config`)
Days = Annotated[int, Field(strict=True, ge=0)]
PositiveDays = Annotated[int, Field(strict=True, gt=0)]
Windows = Annotated[tuple[PositiveDays, ...], Field(min_length=1)]  # `max` of them is taken
Positive = Annotated[float, Field(strict=True, gt=0)]


@dataclass(frozen=True)
class FeatureConfig:
    """Window lengths in days; `delay_days` is when the handbook takes a label as known.

    The served values are `models/model.yaml`'s (`models.config`), with the policy's delay.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # a misspelt key in model.yaml is an error

    windows: Windows = (1, 7, 30)
    delay_days: Days = 7
    label_windows: tuple[PositiveDays, ...] = (1, 7)
    profile_days: PositiveDays = 30
    min_amount_scale: Positive = 1.0  # keeps ratios and z-scores finite for near-zero spending
    # known frauds among a terminal's transactions made between lo and hi days ago: a terminal
    # compromise lasts weeks, so "frauds lately but none before" says it is still going on
    terminal_fraud_spans: tuple[tuple[Days, PositiveDays], ...] = ((0, 14), (0, 28), (28, 35))
    # the customer's usual spending: the profile window ending this many days ago, before a
    # recent compromise could inflate it
    profile_lag_days: Days = 7
    high_amount_ratio: Positive = 3.0  # an amount this many times the usual spending is unusual
    anomaly_windows: Windows = (1, 7)

    def __post_init__(self) -> None:
        """An empty span would count nothing, silently."""
        empty = [f"{lo}-{hi}" for lo, hi in self.terminal_fraud_spans if lo >= hi]
        if empty:
            raise ValueError(f"terminal_fraud_spans: need lo < hi, got {', '.join(empty)}")

    @property
    def history_days(self) -> int:
        """How far back `history` must reach for the features of a transaction to be exact."""
        return max(
            max(self.windows) + self.delay_days,
            self.profile_days + self.profile_lag_days + max(self.anomaly_windows),
            *(hi for _, hi in self.terminal_fraud_spans),
        )


def handbook_features(cfg: FeatureConfig) -> list[str]:
    customer = [
        f"customer_id_{kind}_{w}day_window" for w in cfg.windows for kind in ("nb_tx", "avg_amount")
    ]
    terminal = [
        f"terminal_id_{kind}_{w}day_window" for w in cfg.windows for kind in ("nb_tx", "risk")
    ]
    return ["tx_amount", "tx_during_weekend", "tx_during_night", *customer, *terminal]


def feature_columns(cfg: FeatureConfig) -> list[str]:
    fresh = [
        f"{entity}_frauds_known_{w}day"
        for entity in ("terminal_id", "customer_id")
        for w in cfg.label_windows
    ]
    profile = [
        f"customer_id_amount_ratio_{cfg.profile_days}day",
        f"customer_id_amount_zscore_{cfg.profile_days}day",
        "customer_id_hours_since_prev_tx",
    ]
    spans = [f"terminal_id_frauds_known_{lo}_{hi}days_ago" for lo, hi in cfg.terminal_fraud_spans]
    usual = [
        f"customer_id_amount_ratio_usual_{cfg.profile_days}day",
        f"customer_id_amount_zscore_usual_{cfg.profile_days}day",
        *(f"customer_id_unusual_amounts_{w}day" for w in cfg.anomaly_windows),
        f"customer_id_mean_ratio_usual_{max(cfg.anomaly_windows)}day",
    ]
    return [*handbook_features(cfg), *fresh, *profile, *spans, *usual]


DEFAULT_CONFIG = FeatureConfig()
HANDBOOK_FEATURES = handbook_features(DEFAULT_CONFIG)
FEATURE_COLUMNS = feature_columns(DEFAULT_CONFIG)


def feature_texts(cfg: FeatureConfig) -> dict[str, str | list[str]]:
    """Reviewer wording: a template on `{value}`, or [text if 0, text if 1] for 0/1 flags."""
    d, p = cfg.delay_days, cfg.profile_days
    texts: dict[str, str | list[str]] = {
        "tx_amount": "amount of {value:,.2f}",
        "tx_during_weekend": ["made on a weekday", "made on a weekend"],
        "tx_during_night": ["made during the day", "made at night (00:00-06:59)"],
        f"customer_id_amount_ratio_{p}day": (
            f"amount {{value:.1f}}x this customer's {p}-day average"
        ),
        f"customer_id_amount_zscore_{p}day": (
            f"amount {{value:+.1f}} standard deviations from this customer's {p}-day spending"
        ),
        "customer_id_hours_since_prev_tx": (
            "{value:.1f} hours since this customer's previous payment"
        ),
    }
    for w in cfg.windows:
        texts[f"customer_id_nb_tx_{w}day_window"] = (
            f"{{value:.0f}} payments by this customer in the last {w} day(s)"
        )
        texts[f"customer_id_avg_amount_{w}day_window"] = (
            f"this customer's average amount over {w} day(s) is {{value:,.2f}}"
        )
        texts[f"terminal_id_nb_tx_{w}day_window"] = (
            f"terminal had {{value:.0f}} payments in a {w}-day window ending {d} days ago"
        )
        texts[f"terminal_id_risk_{w}day_window"] = (
            f"{{value:.0%}} of this terminal's payments in a {w}-day window ending {d} days ago"
            " were fraud"
        )
    for lo, hi in cfg.terminal_fraud_spans:
        texts[f"terminal_id_frauds_known_{lo}_{hi}days_ago"] = (
            f"{{value:.0f}} confirmed frauds among this terminal's payments of {lo}-{hi} days ago"
        )
    texts[f"customer_id_amount_ratio_usual_{p}day"] = (
        f"amount {{value:.1f}}x this customer's usual spending ({p} days up to"
        f" {cfg.profile_lag_days} days ago)"
    )
    texts[f"customer_id_amount_zscore_usual_{p}day"] = (
        "amount {value:+.1f} standard deviations from this customer's usual spending"
    )
    for w in cfg.anomaly_windows:
        texts[f"customer_id_unusual_amounts_{w}day"] = (
            f"{{value:.0f}} payments of {cfg.high_amount_ratio:g}x the usual amount or more by"
            f" this customer in the last {w} day(s)"
        )
    texts[f"customer_id_mean_ratio_usual_{max(cfg.anomaly_windows)}day"] = (
        f"this customer's payments of the last {max(cfg.anomaly_windows)} days average"
        " {value:.1f}x the usual amount"
    )
    for w in cfg.label_windows:
        texts[f"terminal_id_frauds_known_{w}day"] = (
            f"terminal had {{value:.0f}} confirmed frauds in the last {w} day(s)"
        )
        texts[f"customer_id_frauds_known_{w}day"] = (
            f"{{value:.0f}} confirmed frauds on this customer's card in the last {w} day(s)"
        )
    return texts


class _Timeline:
    """Points (entity code, time) sorted by code then time; windows become binary searches.

    Times are replaced by their rank on a grid of distinct times, so the composite key
    `code * m + rank` fits in int64 whatever the time resolution. Ties keep input order.
    Queries are fastest in (code, time) order, which is how callers issue them.
    """

    def __init__(self, codes: np.ndarray, times: np.ndarray, at: np.ndarray | None = None) -> None:
        """`at`: the rows (input order) features are wanted for, the new transactions; the
        others are only their past. Windows are searched for those rows alone."""
        self.order = np.lexsort((times, codes))
        self.codes, self.times = codes[self.order], times[self.order]
        ordered = np.sort(times)  # nearly free: callers pass times almost in order
        distinct = np.ones(len(ordered), dtype=bool)
        distinct[1:] = ordered[1:] != ordered[:-1]
        self._grid = ordered[distinct]
        self._m = len(self._grid) + 1
        # binary searches of times in input order (chronological for transactions) walk the
        # grid forwards; the same searches in (code, time) order jump about it, far slower
        self._input_times = times
        self._keys = self.codes * self._m + np.searchsorted(self._grid, times)[self.order]
        self._since: dict[int, np.ndarray] = {}
        self._since_at: dict[int, np.ndarray] = {}
        self.at = np.empty(0, dtype=np.int64)  # sorted positions of the rows `at`, in `at` order
        if at is not None:
            rank = np.empty_like(self.order)
            rank[self.order] = np.arange(len(self.order))
            self.at = rank[at]

    def first_after(self, codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Sorted index of the first point of each code with time > the query time."""
        rank = np.searchsorted(self._grid, times, side="right")
        return np.searchsorted(self._keys, codes * self._m + rank, side="left")

    def since(self, span: int) -> np.ndarray:
        """Per point (sorted order), the first point of its code with time > its time - span:
        its own window (t - span, t]. Cached: several features share a span."""
        if span not in self._since:
            rank = np.searchsorted(self._grid, self._input_times - span, side="right")
            self._since[span] = np.searchsorted(
                self._keys, self.codes * self._m + rank[self.order], side="left"
            )
        return self._since[span]

    def since_at(self, span: int) -> np.ndarray:
        """`since` for the points `at` only (most points are history, their windows unused)."""
        if span not in self._since_at:
            rank = np.searchsorted(self._grid, self.times[self.at] - span, side="right")
            self._since_at[span] = np.searchsorted(
                self._keys, self.codes[self.at] * self._m + rank, side="left"
            )
        return self._since_at[span]

    def group_start(self, codes: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._keys, codes * self._m, side="left")

    def cumsum(self, values: np.ndarray) -> np.ndarray:
        """Prefix sums in sorted order; extended precision keeps window sums exact to ~1e-12."""
        return np.concatenate([[0.0], np.cumsum(values[self.order], dtype=np.longdouble)])

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Values computed in sorted order, back in input order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out


def compute_features(
    history: pd.DataFrame,
    new: pd.DataFrame,
    labels: pd.DataFrame,
    cfg: FeatureConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """FEATURE_COLUMNS for `new` (same index and order), with `history` as the past.

    `history` must reach `cfg.history_days` back from the earliest new transaction; rows of
    `history` that reappear in `new` (same transaction_id) are taken from `new`. Labels of
    transactions absent from both frames cannot be placed on a terminal and are ignored.
    """
    tx = _chronological(history, new)
    t, amount = tx.times, tx.amount
    at = np.flatnonzero(tx.new_row >= 0)  # the new rows, in chronological order
    customers = _Timeline(pd.factorize(tx.customer_ids)[0].astype(np.int64), t, at)
    terminals = _Timeline(pd.factorize(tx.terminal_ids)[0].astype(np.int64), t, at)
    out: dict[str, np.ndarray] = {
        "tx_amount": amount[at],
        "tx_during_weekend": (_weekday(t[at]) >= SATURDAY).astype(float),
        "tx_during_night": ((t[at] // NS_PER_HOUR) % 24 <= NIGHT_ENDS_HOUR).astype(float),
    }
    events = _fraud_periods(labels, tx.ids, t)
    for name, values in (
        _customer_features(customers, amount, cfg)
        | _terminal_features(terminals, events, cfg)
        | _fresh_label_features("terminal_id", terminals, events, cfg)
        | _fresh_label_features("customer_id", customers, events, cfg)
        | _terminal_fraud_spans(terminals, events, cfg)
        | _usual_spending_features(customers, amount, cfg)
    ).items():
        out[name] = values
    in_input_order = np.argsort(tx.new_row[at], kind="stable")
    columns = feature_columns(cfg)
    matrix = np.column_stack([out[c][in_input_order] for c in columns])
    return pd.DataFrame(matrix, columns=columns, index=new.index)


@dataclass(frozen=True)
class _Rows:
    """History and new transactions as arrays in chronological order; `new_row` is the row's
    position in `new`, -1 for history. Arrays, not a frame: small online batches spent most of
    their time in pandas bookkeeping."""

    ids: np.ndarray
    times: np.ndarray  # int64 ns
    customer_ids: np.ndarray
    terminal_ids: np.ndarray
    amount: np.ndarray
    new_row: np.ndarray


def _chronological(history: pd.DataFrame, new: pd.DataFrame) -> _Rows:
    """History then new, sorted by time with ties broken by transaction_id in natural order."""
    past = ~history["transaction_id"].isin(new["transaction_id"]).to_numpy()

    def both(name: str) -> np.ndarray:
        return np.concatenate([history[name].to_numpy()[past], new[name].to_numpy()])

    times = np.concatenate([_ns(history["tx_datetime"])[past], _ns(new["tx_datetime"])])
    ids = both("transaction_id")
    new_row = np.concatenate([np.full(int(past.sum()), -1), np.arange(len(new))])
    order = _order(times, ids)
    return _Rows(
        ids=ids[order],
        times=times[order],
        customer_ids=both("customer_id")[order],
        terminal_ids=both("terminal_id")[order],
        amount=both("amount").astype(float)[order],
        new_row=new_row[order],
    )


def chronological_order(tx: pd.DataFrame) -> np.ndarray:
    """Row order by (tx_datetime, transaction_id), ids in natural order ("9" before "10")."""
    return _order(_ns(tx["tx_datetime"]), tx["transaction_id"].to_numpy())


def _order(times: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Only rows sharing a timestamp need their ids compared, so only those become strings."""
    order = np.argsort(times, kind="stable")
    ordered = times[order]
    same = ordered[1:] == ordered[:-1]
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    rows = order[tied]
    tied_ids = ids[rows].astype(str)
    order[tied] = rows[np.lexsort((tied_ids, np.char.str_len(tied_ids), times[rows]))]
    return order


def _ns(when: pd.Series) -> np.ndarray:
    return when.to_numpy("datetime64[ns]").view(np.int64)


def _weekday(t: np.ndarray) -> np.ndarray:
    """Monday 0 ... Sunday 6, as pandas' `dt.weekday` (1970-01-01 was a Thursday)."""
    return (t // NS_PER_DAY + 3) % 7


def _customer_features(
    line: _Timeline, amount: np.ndarray, cfg: FeatureConfig
) -> dict[str, np.ndarray]:
    """Handbook spending windows (t - w, t] ending at the current row, plus its profile."""
    codes, t, pos = line.codes, line.times, line.at
    own = amount[line.order][pos]
    sums, squares = line.cumsum(amount), line.cumsum(amount**2)
    out: dict[str, np.ndarray] = {}
    for w in cfg.windows:
        lo = line.since_at(w * NS_PER_DAY)
        out[f"customer_id_nb_tx_{w}day_window"] = (pos + 1 - lo).astype(float)
        avg = (sums[pos + 1] - sums[lo]) / (pos + 1 - lo)
        out[f"customer_id_avg_amount_{w}day_window"] = avg.astype(float)

    p, scale = cfg.profile_days, cfg.min_amount_scale
    lo = line.since_at(p * NS_PER_DAY)
    n_prior = pos - lo
    mean = ((sums[pos] - sums[lo]) / np.maximum(n_prior, 1)).astype(float)
    mean_sq = ((squares[pos] - squares[lo]) / np.maximum(n_prior, 1)).astype(float)
    std = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
    out[f"customer_id_amount_ratio_{p}day"] = np.where(
        n_prior > 0, own / np.maximum(mean, scale), 1.0
    )
    out[f"customer_id_amount_zscore_{p}day"] = np.where(
        n_prior > 1, (own - mean) / np.maximum(std, scale), 0.0
    )
    has_prev = pos > line.group_start(codes[pos])
    gap = (t[pos] - t[np.maximum(pos - 1, 0)]) / NS_PER_HOUR
    out["customer_id_hours_since_prev_tx"] = np.where(has_prev, np.minimum(gap, p * 24), p * 24)
    return out


def _fraud_periods(labels: pd.DataFrame, ids: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Per transaction row, the periods [start, end) in ns during which it is *known* fraud.

    A label counts from just after its `known_at` (strictly before t) until the next label of
    the same transaction that changes the verdict (latest label wins). Repeated identical
    verdicts (a review confirmed by a chargeback) collapse into one period.
    """
    label_ids = labels["transaction_id"].to_numpy().astype(str)
    known = labels["known_at"].to_numpy("datetime64[ns]").view(np.int64)
    fraud = labels["is_fraud"].to_numpy(int)
    ever_fraud = np.isin(label_ids, label_ids[fraud == 1])  # only these can have a fraud period
    label_ids, known, fraud = label_ids[ever_fraud], known[ever_fraud], fraud[ever_fraud]
    wanted = pd.Index(label_ids).unique()
    slot = wanted.get_indexer(ids.astype(str))  # a small table looked up once per transaction
    row_of = np.full(len(wanted), -1)
    row_of[slot[slot >= 0]] = np.flatnonzero(slot >= 0)
    row = row_of[wanted.get_indexer(label_ids)]
    keep = row >= 0
    row, known, fraud = row[keep], known[keep], fraud[keep]
    order = np.lexsort((fraud, known, row))
    row, known, fraud = row[order], known[order], fraud[order]
    changed = np.ones(len(row), dtype=bool)
    changed[1:] = (row[1:] != row[:-1]) | (fraud[1:] != fraud[:-1])
    row, known, fraud = row[changed], known[changed], fraud[changed]
    next_known = np.full(len(row), FOREVER, dtype=np.int64)
    same = row[1:] == row[:-1]
    next_known[:-1][same] = known[1:][same]
    is_fraud = fraud == 1
    return {
        "row": row[is_fraud],
        "tx_time": t[row[is_fraud]],
        "start": known[is_fraud] + 1,
        "end": next_known[is_fraud] + 1,
    }


def _count_active(
    line: _Timeline, point_codes: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """For each point `at` of `line`, how many periods [start, end) of its entity contain its
    time."""
    valid = start < end
    edges = _Timeline(
        np.concatenate([point_codes[valid], point_codes[valid]]),
        np.concatenate([start[valid], end[valid]]),
    )
    step = np.repeat(np.array([1, -1]), int(valid.sum()))  # +1 at a start, -1 at an end
    # every period ends in its own entity, so an entity's steps sum to 0 and the running total
    # just before the first edge after t counts its periods with start <= t < end
    running = np.concatenate([[0], np.cumsum(step[edges.order])])
    return running[edges.first_after(line.codes[line.at], line.times[line.at])]


def _terminal_features(
    line: _Timeline, events: dict[str, np.ndarray], cfg: FeatureConfig
) -> dict[str, np.ndarray]:
    """Handbook terminal windows (t - delay - w, t - delay]; frauds only if known before t."""
    codes = line.codes
    delay = cfg.delay_days * NS_PER_DAY
    hi = line.since_at(delay)
    ev_codes = line.unsort(codes)[events["row"]]
    tx_time = events["tx_time"]
    out: dict[str, np.ndarray] = {}
    for w in cfg.windows:
        span = delay + w * NS_PER_DAY
        n_tx = hi - line.since_at(span)
        start = np.maximum(events["start"], tx_time + delay)
        end = np.minimum(events["end"], tx_time + span)
        n_fraud = _count_active(line, ev_codes, start, end)
        out[f"terminal_id_nb_tx_{w}day_window"] = n_tx.astype(float)
        out[f"terminal_id_risk_{w}day_window"] = np.where(
            n_tx > 0, n_fraud / np.maximum(n_tx, 1), 0.0
        )
    return out


def _fresh_label_features(
    name: str, line: _Timeline, events: dict[str, np.ndarray], cfg: FeatureConfig
) -> dict[str, np.ndarray]:
    """Frauds on this entity that became known in (t - w, t), whatever the transaction's age."""
    ev_codes = line.unsort(line.codes)[events["row"]]
    start = events["start"]  # known_at + 1 ns
    out: dict[str, np.ndarray] = {}
    for w in cfg.label_windows:
        end = np.minimum(events["end"], start - 1 + w * NS_PER_DAY)
        count = _count_active(line, ev_codes, start, end)
        out[f"{name}_frauds_known_{w}day"] = count.astype(float)
    return out


def _terminal_fraud_spans(
    line: _Timeline, events: dict[str, np.ndarray], cfg: FeatureConfig
) -> dict[str, np.ndarray]:
    """Known frauds among the terminal's transactions of (t - hi, t - lo] days."""
    ev_codes = line.unsort(line.codes)[events["row"]]
    tx_time = events["tx_time"]
    out: dict[str, np.ndarray] = {}
    for lo, hi in cfg.terminal_fraud_spans:
        start = np.maximum(events["start"], tx_time + lo * NS_PER_DAY)
        end = np.minimum(events["end"], tx_time + hi * NS_PER_DAY)
        count = _count_active(line, ev_codes, start, end)
        out[f"terminal_id_frauds_known_{lo}_{hi}days_ago"] = count.astype(float)
    return out


def _usual_spending_features(
    line: _Timeline, amount: np.ndarray, cfg: FeatureConfig
) -> dict[str, np.ndarray]:
    """Amount against the customer's spending before the last `profile_lag_days`, and how many
    recent payments were far above it (a compromised card makes several)."""
    pos = np.arange(len(line.order))
    own = amount[line.order]
    sums, squares = line.cumsum(amount), line.cumsum(amount**2)
    p, lag, scale = cfg.profile_days, cfg.profile_lag_days, cfg.min_amount_scale
    hi = np.minimum(line.since(lag * NS_PER_DAY), pos)
    lo = np.minimum(line.since((p + lag) * NS_PER_DAY), hi)
    n = hi - lo
    mean = ((sums[hi] - sums[lo]) / np.maximum(n, 1)).astype(float)
    mean_sq = ((squares[hi] - squares[lo]) / np.maximum(n, 1)).astype(float)
    std = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
    ratio = np.where(n > 0, own / np.maximum(mean, scale), 1.0)  # every point: windows sum it
    at = line.at
    out = {
        f"customer_id_amount_ratio_usual_{p}day": ratio[at],
        f"customer_id_amount_zscore_usual_{p}day": np.where(
            n[at] > 1, (own[at] - mean[at]) / np.maximum(std[at], scale), 0.0
        ),
    }
    unusual = np.concatenate([[0], np.cumsum(ratio >= cfg.high_amount_ratio)])
    ratios = np.concatenate([[0.0], np.cumsum(ratio)])
    for w in cfg.anomaly_windows:
        start = line.since_at(w * NS_PER_DAY)
        out[f"customer_id_unusual_amounts_{w}day"] = (unusual[at + 1] - unusual[start]).astype(
            float
        )
    w = max(cfg.anomaly_windows)
    start = line.since_at(w * NS_PER_DAY)
    out[f"customer_id_mean_ratio_usual_{w}day"] = (ratios[at + 1] - ratios[start]) / (
        at + 1 - start
    )
    return out
