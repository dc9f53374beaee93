"""Choose what people review beyond the router, within the day's review budget.

Pure functions over frames, no I/O: `pipeline.decide` calls them for each scored batch, a replay
benchmark can call them day by day. The router's review routes are mandatory and spend the
budget first (the caller counts them); the candidates are the auto-decided transactions. A
slice of the picks (`exploration_share`) is a simple random sample of all candidates with a
known inclusion probability, so its answers estimate what the auto decisions miss without bias
(`monitoring.exploration`); the rest is chosen by the policy's strategy, propensity 1.

Candidate frames carry `transaction_id, score, amount, route` and, where the model gives them,
`confidence` and `reasons` (the scoring contract's top-3 SHAP dicts).
"""

import math
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from fraudloop.policy import EXPLORATION, ActiveLearning, Route, Strategy

AUTO_ROUTES = (Route.AUTO_ALLOW.value, Route.AUTO_BLOCK.value)
PICK_COLUMNS = ["transaction_id", "strategy", "reason", "propensity"]
HOURS_PER_DAY = 24
_DECIDED = {Route.AUTO_ALLOW.value: "auto-approved", Route.AUTO_BLOCK.value: "auto-blocked"}

# a picker: (candidates, free rows, how many, policy section, vectors) -> rows, reason per row
Picker = Callable[
    [pd.DataFrame, np.ndarray, int, ActiveLearning, np.ndarray | None],
    tuple[np.ndarray, list[str]],
]


def allowance(budget: int, used: int, now: datetime, pace_hourly: bool) -> int:
    """Picks a batch decided at `now` may add: the day's budget less what the router and the
    day's earlier picks used. Paced, only the share accrued by the end of `now`'s hour counts,
    so the first batch of a day cannot spend it all and exploration sees every hour."""
    accrued = math.ceil(budget * (now.hour + 1) / HOURS_PER_DAY) if pace_hourly else budget
    return max(0, min(budget, accrued) - used)


def candidates(batch: pd.DataFrame) -> pd.DataFrame:
    """The auto-decided rows with a score: review routes are the router's, and rows decided by
    the fallback rules have no score to choose by."""
    keep = batch["route"].isin(AUTO_ROUTES).to_numpy() & batch["score"].notna().to_numpy()
    return batch[keep].reset_index(drop=True)


def batch_seed(seed: int, now: datetime, first_id: str) -> int:
    """The random draw of one batch: reproducible, and different from the next batch's."""
    return zlib.crc32(f"{seed}:{now.isoformat()}:{first_id}".encode())


def select_reviews(
    cands: pd.DataFrame,
    budget: int,
    config: ActiveLearning,
    seed: int,
    vectors: np.ndarray | None = None,
) -> pd.DataFrame:
    """Up to `budget` picks among `cands`: the exploration sample first, then the strategy's.

    Returns PICK_COLUMNS. `vectors` (one row per candidate) is what `diversity` measures
    distance on; without it, the top-3 SHAP contributions of `cands["reasons"]`.
    """
    n = len(cands)
    k = min(budget, n)
    if k <= 0:
        return pd.DataFrame({c: [] for c in PICK_COLUMNS})
    rng = np.random.default_rng(seed)
    expected = k * config.exploration_share
    explored = explore(n, expected, rng)
    free = np.ones(n, dtype=bool)
    free[explored] = False
    chance = expected / n
    parts = [
        _picks(
            cands,
            explored,
            EXPLORATION,
            [
                f"random sample (chance {chance:.2%}) measuring what automatic decisions miss; "
                f"label it as you judge it ({_DECIDED[r]})"
                for r in cands["route"].to_numpy()[explored]
            ],
            chance,
        )
    ]
    carry = 0
    for strategy, quota in strategy_plan(config, k - len(explored)):
        rows, reasons = PICKERS[strategy](cands, free, quota + carry, config, vectors)
        carry = quota + carry - len(rows)  # a strategy short of candidates passes its slots on
        free[rows] = False
        parts.append(_picks(cands, rows, str(strategy), reasons, 1.0))
    return pd.concat(parts, ignore_index=True)


def explore(n: int, expected: float, rng: np.random.Generator) -> np.ndarray:
    """A simple random sample of rows of size `expected` on average (its fraction rounded up
    with that probability), so every row's inclusion probability is exactly `expected / n`,
    even when the slice is a fraction of one pick."""
    whole = math.floor(expected)
    size = whole + int(rng.random() < expected - whole)
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def strategy_plan(config: ActiveLearning, n: int) -> list[tuple[Strategy, int]]:
    """How many picks each strategy makes: all of them, or `mix`'s shares (largest remainder),
    in the policy's order."""
    if config.strategy != Strategy.MIX:
        return [(config.strategy, n)]
    raw = {s: n * share for s, share in config.mix.items()}
    counts = {s: math.floor(v) for s, v in raw.items()}
    by_remainder = sorted(raw, key=lambda s: raw[s] - counts[s], reverse=True)
    for s in by_remainder[: n - sum(counts.values())]:
        counts[s] += 1
    return [(s, counts[s]) for s in config.mix]


def _picks(
    cands: pd.DataFrame, rows: np.ndarray, strategy: str, reasons: list[str], propensity: float
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": cands["transaction_id"].to_numpy()[rows],
            "strategy": [strategy] * len(rows),
            "reason": reasons,
            "propensity": np.full(len(rows), propensity),
        }
    )


def _ranked(key: np.ndarray, free: np.ndarray, n: int) -> np.ndarray:
    """The `n` free rows of highest key, highest first (ties in candidate order)."""
    idx = np.flatnonzero(free & np.isfinite(key))
    return idx[np.argsort(-key[idx], kind="stable")[: max(n, 0)]]


def _column(cands: pd.DataFrame, name: str) -> np.ndarray:
    return cands[name].to_numpy(dtype=float)


def _confidence(cands: pd.DataFrame) -> np.ndarray:
    """The model's confidence, or the scoring contract's max(score, 1 - score) without it."""
    if "confidence" in cands:
        return _column(cands, "confidence")
    score = _column(cands, "score")
    return np.maximum(score, 1 - score)


def _decided(cands: pd.DataFrame, rows: np.ndarray) -> list[str]:
    return [_DECIDED[r] for r in cands["route"].to_numpy()[rows]]


def top_score(
    cands: pd.DataFrame,
    free: np.ndarray,
    n: int,
    _: ActiveLearning,
    __: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The highest scores the router still allowed: just below the review band."""
    allowed = cands["route"].to_numpy() == Route.AUTO_ALLOW.value
    rows = _ranked(np.where(allowed, _column(cands, "score"), -np.inf), free, n)
    score = _column(cands, "score")[rows]
    return rows, [f"top score below the review band: fraud probability {s:.1%}" for s in score]


def uncertainty(
    cands: pd.DataFrame,
    free: np.ndarray,
    n: int,
    _: ActiveLearning,
    __: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Where the model is least sure of itself (lowest confidence), on either side."""
    confidence = _confidence(cands)
    rows = _ranked(-confidence, free, n)
    score = _column(cands, "score")[rows]
    return rows, [
        f"the model is unsure: confidence {c:.1%}, fraud probability {s:.1%} ({d})"
        for c, s, d in zip(confidence[rows], score, _decided(cands, rows), strict=True)
    ]


def impact(
    cands: pd.DataFrame,
    free: np.ndarray,
    n: int,
    _: ActiveLearning,
    __: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The largest expected loss if the automatic decision is wrong: score x amount."""
    score, amount = _column(cands, "score"), _column(cands, "amount")
    rows = _ranked(score * amount, free, n)
    return rows, [
        f"high stake: fraud probability {s:.1%} x amount {a:,.2f} = {s * a:,.2f} ({d})"
        for s, a, d in zip(score[rows], amount[rows], _decided(cands, rows), strict=True)
    ]


def diversity(
    cands: pd.DataFrame,
    free: np.ndarray,
    n: int,
    config: ActiveLearning,
    vectors: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Greedy k-center among the `diversity_pool` highest scores: each pick is the candidate
    farthest from every pick so far (this batch's, of any strategy), so the picks are not
    variants of one pattern. Cost: pool x picks distances, whatever the batch size."""
    pool = _ranked(_column(cands, "score"), free, config.diversity_pool)
    if n <= 0 or len(pool) == 0:
        return np.empty(0, dtype=np.int64), []
    rows = np.concatenate([pool, np.flatnonzero(~free)])
    space = _space(cands, rows, vectors)
    chosen, gaps = k_center(space[: len(pool)], space[len(pool) :], n)
    score = _column(cands, "score")[pool[chosen]]
    return pool[chosen], [
        (
            f"unlike this batch's other picks (distance {g:.2f} to the nearest), "
            if np.isfinite(g)
            else "the riskiest of a new pattern, "
        )
        + f"fraud probability {s:.1%} ({d})"
        for g, s, d in zip(gaps, score, _decided(cands, pool[chosen]), strict=True)
    ]


def k_center(points: np.ndarray, centers: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center: `n` rows of `points`, each the farthest from `centers` and the rows
    chosen before it (ties to the lowest row, the first pick with no centers is row 0); returns
    the rows and each one's distance to its nearest center when chosen (inf for the first).

    Squared distances as |p|^2 + |c|^2 - 2 p.c: a matrix-vector product per pick."""
    norms = (points**2).sum(axis=1)
    nearest = np.full(len(points), np.inf)  # squared distance to the nearest center so far
    if len(centers):
        cross = points @ centers.T
        nearest = (norms[:, None] + (centers**2).sum(axis=1)[None, :] - 2 * cross).min(axis=1)
    chosen: list[int] = []
    gaps: list[float] = []
    for _ in range(min(n, len(points))):
        row = int(np.argmax(nearest))  # chosen rows are at -inf: never again
        chosen.append(row)
        gaps.append(float(np.sqrt(max(nearest[row], 0.0))))
        nearest = np.minimum(nearest, norms + norms[row] - 2 * (points @ points[row]))
        nearest[row] = -np.inf
    return np.array(chosen, dtype=np.int64), np.array(gaps, dtype=float)


def _space(cands: pd.DataFrame, rows: np.ndarray, vectors: np.ndarray | None) -> np.ndarray:
    """What diversity measures on: the caller's vectors, the SHAP reasons, or at least the
    score and the order of magnitude of the amount."""
    if vectors is not None:
        return vectors[rows]
    if "reasons" in cands:
        return reason_vectors(cands["reasons"].iloc[rows].tolist())
    picked = cands.iloc[rows]
    return np.column_stack([_column(picked, "score"), np.log1p(_column(picked, "amount"))])


def reason_vectors(reasons: Sequence[Sequence[dict[str, Any]]]) -> np.ndarray:
    """The top-3 SHAP contributions (log-odds) as vectors over the features they name: two
    transactions flagged for the same reasons, as strongly, are near each other."""
    names = sorted({r["feature"] for row in reasons for r in row})
    column = {name: i for i, name in enumerate(names)}
    out = np.zeros((len(reasons), len(names)))
    for i, row in enumerate(reasons):
        for r in row:
            out[i, column[r["feature"]]] = float(r["contribution"])
    return out


def mean_pairwise_distance(points: np.ndarray) -> float:
    """How spread a set of picks is (the diversity strategy's yardstick)."""
    if len(points) < 2:  # noqa: PLR2004 - a pair needs two
        return 0.0
    diff = points[:, None, :] - points[None, :, :]
    dist = np.sqrt((diff**2).sum(axis=-1))
    return float(dist[np.triu_indices(len(points), k=1)].mean())


PICKERS: dict[Strategy, Picker] = {
    Strategy.TOP_SCORE: top_score,
    Strategy.UNCERTAINTY: uncertainty,
    Strategy.IMPACT: impact,
    Strategy.DIVERSITY: diversity,
}
