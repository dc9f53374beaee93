"""End-to-end batch scoring against bare XGBoost on the same rows, in the same process.

End to end is `pipeline.decide.score_batch` per chunk, each chunk one transaction and all of
them one `RunHistory`, as the scoring flow scores a long window: validate, features from the
stored history, champion (calibrated probability + exact TreeSHAP top-3),
route, persist transactions, decisions, review outbox and hash-chained audit events. Bare is
`inplace_predict` plus `predict(pred_contribs=True)` of the same booster on the same rows'
features (computed untimed), timed right after each end-to-end chunk so both see the same
machine load, on the booster's own thread count (one) and, for comparison, on every core.
Chunks bound memory: the peak must not grow with `rows`.
"""

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from benchmarks.common import champion, make_world, peak_rss_mb, scratch_dir, workload
from fraudloop.policy import Policy
from fraudloop.storage import engine_for, migrate, open_session
from models.features import compute_features
from models.scoring import ScoringModel
from pipeline.decide import score_batch
from pipeline.features import RunHistory, feature_config

BARE_ROWS_MAX = 100_000  # a rate: sampling more rows only takes longer


def run(rows: int, db_url: str | None, policy: Policy, chunk: int = 10_000) -> dict[str, Any]:
    with scratch_dir() as tmp:
        home = Path(tmp)
        url = db_url or f"sqlite:///{home / 'bench.db'}"
        migrate(url)
        world = make_world()
        model = champion(world, home)
        setup_rss = peak_rss_mb()
        run_id = uuid.uuid4().hex[:8]

        booster = _booster(model)
        all_cores = booster.copy()
        all_cores.set_param({"nthread": 0})  # 0: every core
        elapsed = bare_elapsed = all_cores_elapsed = 0.0
        scored = bare_rows = 0
        peak_by_rows: dict[int, float] = {}  # flat memory: the peak stops growing
        every = max(1, rows // BARE_ROWS_MAX)  # bare on every `every`-th chunk, spread over the run
        run = RunHistory()  # the chunks are one run: each reads only the history since the last
        for i, records in enumerate(workload(world, rows, chunk, run_id)):
            started = time.perf_counter()
            with open_session(url) as session, session.begin():
                now = records[-1]["tx_datetime"].to_pydatetime()
                result = score_batch(session, records, model, policy, now, run)
            elapsed += time.perf_counter() - started
            scored += result.new_decisions
            if i % every == 0:  # right after, on the same rows: under the same machine load
                X = _features(model.features, records, policy)
                bare_elapsed += _bare(booster, model.features, X)
                all_cores_elapsed += _bare(all_cores, model.features, X)
                bare_rows += len(records)
                peak_by_rows[scored] = round(peak_rss_mb(), 1)
        if scored != rows:
            raise RuntimeError(f"expected {rows} new decisions, stored {scored}")
        engine_for(url).dispose()
    rate, bare_rate = rows / elapsed, bare_rows / bare_elapsed
    return {
        "rows": rows,
        "db": url.split(":", 1)[0],
        "chunk": chunk,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(rate, 1),
        "bare_rows": bare_rows,
        "bare_rows_per_s": round(bare_rate, 1),
        "ratio": round(rate / bare_rate, 3),
        # the served booster predicts on one thread (models.train.FraudModel.load); bare XGBoost
        # on every core, for comparison
        "bare_all_cores_rows_per_s": round(bare_rows / all_cores_elapsed, 1),
        "ratio_all_cores": round(rate * all_cores_elapsed / bare_rows, 3),
        "setup_rss_mb": round(setup_rss, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_mb_by_rows": peak_by_rows,
        "model": f"{model.name} v{model.version}",
    }


def _features(features: list[str], records: list[dict], policy: Policy) -> np.ndarray:
    """These rows' features, untimed and without history: bare XGBoost never sees a store."""
    frame = pd.DataFrame(records)
    empty_labels = pd.DataFrame(columns=["transaction_id", "is_fraud", "known_at", "source"])
    X = compute_features(frame.iloc[:0], frame, empty_labels, feature_config(policy))
    return np.ascontiguousarray(X[features].to_numpy(np.float32))


def _bare(booster: xgb.Booster, features: list[str], X: np.ndarray) -> float:
    """Seconds for prediction + SHAP of the champion's booster on these features."""
    started = time.perf_counter()
    booster.inplace_predict(X)
    booster.predict(xgb.DMatrix(X, feature_names=features), pred_contribs=True)
    return time.perf_counter() - started


def _booster(model: ScoringModel) -> xgb.Booster:
    """The very booster the pyfunc wraps (same trees, same threads)."""
    return model.pyfunc.unwrap_python_model().model.booster
