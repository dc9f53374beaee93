"""The replay benchmark on a small simulated world: the loop's rules hold day by day, the cached
features are the training set's, and a seed reproduces the replay."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from benchmarks import replay as rp
from benchmarks import replay_report as report
from fraudloop.errors import FraudloopError
from fraudloop.policy import Strategy, load_policy
from fraudloop.settings import get_settings
from models.training_set import build_training_frame
from pipeline.features import model_config

DAYS = 4
BUDGET = 15


@pytest.fixture(scope="module")
def setup() -> tuple[rp.ReplayData, object, object]:
    policy = load_policy(get_settings().policy_file)
    config = model_config(policy)
    lead = config.features.history_days + policy.learning.train_window_days
    data = rp.simulated("sim:customers=600,terminals=1200,seed=3", DAYS, lead)
    return data, policy, config


def _replay(setup, seed: int = 0, error: float = 0.0) -> rp.Replay:  # type: ignore[no-untyped-def]
    data, policy, config = setup
    cfg = rp.ReplayConfig(data.start, DAYS, BUDGET, 7, error, seed)
    return rp.Replay(data.tx, cfg, config, policy.learning)


def _initial(replay: rp.Replay):  # type: ignore[no-untyped-def]
    return replay.initial_model(replay.window_features())


@pytest.fixture(scope="module")
def played(setup) -> dict[str, pd.DataFrame]:  # type: ignore[no-untyped-def]
    _, policy, _ = setup
    return _replay(setup).run(rp.arms(policy.active_learning, ["top_score", "default"]))


def test_every_arm_reviews_the_budget_each_day(played) -> None:  # type: ignore[no-untyped-def]
    assert set(played) == {"static", "delayed", "random", "top_score", "default"}
    for daily in played.values():
        assert len(daily) == DAYS
        assert (daily["reviews"] <= BUDGET).all()
        assert (daily["cp100"] <= daily["ceiling"] + 1e-9).all()


def test_model_picks_beat_random_picks(played) -> None:  # type: ignore[no-untyped-def]
    assert played["top_score"]["cp100"].mean() > played["random"]["cp100"].mean()


def test_static_never_promotes_and_retraining_arms_may(played) -> None:  # type: ignore[no-untyped-def]
    assert played["static"]["promoted"].sum() == 0


def test_a_seed_reproduces_the_replay(setup) -> None:  # type: ignore[no-untyped-def]
    _, policy, _ = setup
    arm = [a for a in rp.arms(policy.active_learning, ["default"]) if a.name == "default"]
    first = _replay(setup, seed=5).run(arm)["default"]
    again = _replay(setup, seed=5).run(arm)["default"]
    pd.testing.assert_frame_equal(first, again)


def test_blocked_cards_leave_the_candidates(setup) -> None:  # type: ignore[no-untyped-def]
    _, policy, _ = setup
    replay = _replay(setup)
    top = policy.active_learning.model_copy(
        update={"strategy": Strategy.TOP_SCORE, "exploration_share": 0.0}
    )
    state = rp.ArmState(rp.Arm("t", top), _initial(replay), {})
    day = replay.day(0)
    replay.step(state, 0, day, np.random.default_rng(0))
    blocked = set(state.blocked)
    assert blocked, "the first day's picks found compromised cards"
    scored = replay.day(1).rows.assign(score=1.0)
    picks = replay.pick(state, scored, np.random.default_rng(1))
    assert not blocked & set(picks["customer_id"])


def test_cached_features_are_what_the_training_set_computes(setup) -> None:  # type: ignore[no-untyped-def]
    """The replay trains on each day's features as it scored them: they must be the ones
    `build_training_frame` computes again from the same labels (reviews included)."""
    _, policy, config = setup
    replay = _replay(setup)
    top = policy.active_learning.model_copy(update={"strategy": Strategy.TOP_SCORE})
    state = rp.ArmState(rp.Arm("t", top), _initial(replay), {})
    for i in range(2):
        replay.step(state, i, replay.day(i), np.random.default_rng(i))
    labels = state.labels(replay.chargebacks)
    as_of = replay.cfg.start + timedelta(days=2)
    cached = replay.training_frame(
        {d: f for d, f in state.features.items() if d >= replay.cfg.start}, as_of, labels
    )
    window = 2
    fresh = build_training_frame(replay.tx, labels, as_of, window, config.features)
    assert cached.transaction_ids == fresh.transaction_ids
    np.testing.assert_allclose(cached.X.to_numpy(), fresh.X.to_numpy(), rtol=1e-9, atol=1e-9)


def test_summary_pairs_each_strategy_with_static_and_delayed(played) -> None:  # type: ignore[no-untyped-def]
    result = report.summary({0: played}, "default")
    assert result["default"] == "default"
    static = result["strategies"]["static"]
    assert static["vs_static_daily_mean"] == 0.0
    assert static["vs_static_weeks_2_4_mean"] is None  # a 4-day replay has no week 2
    top = result["strategies"]["top_score"]
    diff = played["top_score"]["cp100"] - played["static"]["cp100"]
    assert top["vs_static_daily_mean"] == pytest.approx(diff.mean(), abs=1e-4)
    late = played["top_score"]["cp100"] - played["delayed"]["cp100"]
    assert top["vs_delayed_daily_mean"] == pytest.approx(late.mean(), abs=1e-4)
    assert result["strategies"]["delayed"]["vs_delayed_daily_mean"] == 0.0
    assert len(top["cp100_by_week"]) == 1
    caught = played["top_score"]["fraud_caught"] - played["static"]["fraud_caught"]
    assert top["caught_vs_static_daily_mean"] == pytest.approx(caught.mean(), abs=0.1)
    assert 0 < top["chargeback_ceiling_mean"] <= top["ceiling_mean"]
    # a second seed replays the same days: it is no second sample of them
    twice = report.summary({0: played, 1: played}, "default")["strategies"]["top_score"]
    assert twice["vs_static_daily_se"] == top["vs_static_daily_se"]
    page = report.page(result, report.curves_png({0: played}), "replay")
    assert "top_score" in page and "data:image/png;base64," in page


def test_the_chargeback_ceiling_leaves_out_terminals_compromised_within_the_delay(played) -> None:  # type: ignore[no-untyped-def]
    day0 = pd.Timestamp("2018-05-01")
    tx = pd.DataFrame(
        {
            "tx_datetime": [day0 + timedelta(days=d) for d in (0, 1, 3, 5, 8, 9)],
            "terminal_id": ["T", "X", "T", "U", "T", "U"],
            "fraud_scenario": [2, 1, 2, 2, 2, 0],
        }
    )
    young = rp.young_terminal_frauds(tx, 7)
    assert young is not None
    np.testing.assert_array_equal(young, [True, False, True, True, False, False])
    assert rp.young_terminal_frauds(tx.drop(columns="fraud_scenario"), 7) is None
    for daily in played.values():
        assert (daily["chargeback_ceiling"] <= daily["ceiling"] + 1e-9).all()


def test_recovery_counts_days_back_to_the_pre_drift_ratio() -> None:
    daily = pd.DataFrame(
        {
            "day": range(8),
            "cp100": [0.5, 0.5, 0.5, 0.1, 0.2, 0.45, 0.5, 0.5],
            "ceiling": [1.0] * 8,
        }
    )
    assert report.recovery_days(daily, 3) == 4  # day 7: (0.45 + 0.5 + 0.5) / 3 >= 0.9 x 0.5
    flat = daily.assign(cp100=[0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert report.recovery_days(flat, 3) is None


def test_sim_spec_names_the_bad_key() -> None:
    with pytest.raises(rp.FraudloopError, match="colour"):
        rp.simulated("sim:colour=red", 2, 10)


def test_arms_in_parallel_processes_give_the_same_records(setup, played) -> None:  # type: ignore[no-untyped-def]
    _, policy, _ = setup
    chosen = [
        a
        for a in rp.arms(policy.active_learning, ["top_score"])
        if a.name in ("static", "top_score")
    ]
    finished: list[str] = []
    parallel = rp.run_arms(_replay(setup), chosen, 2, finished.append)
    assert sorted(finished) == sorted(a.name for a in chosen)
    for arm in chosen:
        pd.testing.assert_frame_equal(parallel[arm.name], played[arm.name])
        assert parallel[arm.name].attrs == played[arm.name].attrs


def test_a_matured_arm_trains_on_days_past_the_chargeback_delay_only(setup) -> None:  # type: ignore[no-untyped-def]
    """`NAME@matured` keeps the reviews out of the training rows: its training frame holds only
    payments older than the delay, every one of them labelled by a chargeback by then."""
    _, policy, _ = setup
    made = {arm.name: arm for arm in rp.arms(policy.active_learning, ["top_score@matured"])}
    assert made["top_score@matured"].matured and not made["delayed"].matured
    with pytest.raises(FraudloopError, match="@matured"):
        rp.arms(policy.active_learning, ["top_score@fresh"])
    replay = _replay(setup)
    features = replay.window_features()
    as_of = replay.cfg.start
    delay = timedelta(days=replay.cfg.delay_days)
    # every label known at once, as if each payment had been reviewed the moment it was made
    at_once = replay.chargebacks.assign(known_at=replay.chargebacks["known_at"] - delay)
    frame = replay.training_frame(features, as_of, at_once, matured=True)
    whole = replay.training_frame(features, as_of, at_once)
    times = replay.tx.set_index("transaction_id").loc[frame.transaction_ids, "tx_datetime"]
    assert times.max() < as_of - delay
    assert 0 < len(frame.transaction_ids) < len(whole.transaction_ids)
