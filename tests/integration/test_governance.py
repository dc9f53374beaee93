"""Model governance on a real MLflow registry (SQLite) and a SQLite store for the audit trail:
lineage on every version, and `champion` moved by hand (promote, rollback), audited."""

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli.main import app
from fraudloop import audit
from fraudloop.errors import FraudloopError
from fraudloop.policy import load_policy
from fraudloop.settings import get_settings
from fraudloop.storage import migrate, open_session
from models import governance, registry
from models.challenger import Challenger, fit_challenger, run_record
from models.config import packaged_model_config
from models.promotion import promote
from simulation.world import SimulationConfig, chargeback_labels, simulate

pytestmark = pytest.mark.integration
NAME = "fraud-detector"
AS_OF = datetime(2018, 4, 25)
WINDOW_DAYS, HOLDOUT_DAYS = 17, 3
NOW = datetime(2018, 4, 26, 9, 0)


@pytest.fixture(autouse=True)
def _quiet_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def world() -> pd.DataFrame:
    return simulate(SimulationConfig(n_customers=300, n_terminals=600, days=24, seed=9))


@pytest.fixture(scope="module")
def labels(world: pd.DataFrame) -> pd.DataFrame:
    """Chargebacks, 40 reviews inside the training part of the window, exploration answers on
    transactions before the window, and active-learning answers that arrive after `AS_OF`."""
    start = AS_OF - timedelta(days=WINDOW_DAYS)
    # the holdout is the last days before the newest chargeback known at AS_OF (7 days' delay)
    in_train = world[world["tx_datetime"].between(start, AS_OF - timedelta(days=HOLDOUT_DAYS + 8))]
    before = world[world["tx_datetime"] < start]

    def answers(tx: pd.DataFrame, source: str, after: timedelta) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "transaction_id": tx["transaction_id"].astype(str).to_numpy(),
                "is_fraud": tx["is_fraud"].astype(int).to_numpy(),
                "known_at": (tx["tx_datetime"] + after).to_numpy(),
                "source": source,
            }
        )

    late = timedelta(days=WINDOW_DAYS + 1)
    return pd.concat(
        [
            chargeback_labels(world, 7),
            answers(in_train.sample(40, random_state=1), "review", timedelta(hours=2)),
            answers(before.sample(10, random_state=2), "exploration", timedelta(hours=2)),
            answers(in_train.sample(5, random_state=3), "active_learning", late),
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def challenger(world: pd.DataFrame, labels: pd.DataFrame) -> Challenger:
    packaged = packaged_model_config()
    config = packaged.with_delay(7).model_copy(
        update={"training": replace(packaged.training, n_estimators=15)}
    )
    return fit_challenger(world, labels, AS_OF, WINDOW_DAYS, HOLDOUT_DAYS, config)


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    return url


def _register(challenger: Challenger, uri: str, parent: int | None = None) -> int:
    run = run_record(
        challenger, AS_OF, WINDOW_DAYS, HOLDOUT_DAYS, "test-policy", parent=parent, strategy="mix"
    )
    return registry.log_and_register(
        challenger.model,
        challenger.split.train.X,
        run.metrics,
        run.params,
        run.window,
        uri,
        NAME,
        config=challenger.config,
        tags=run.tags,
    )


def _first_champion(store: str, uri: str, version: int) -> None:
    """The retrain flow's path: the promotion rule, its own audit event."""
    with open_session(store) as session, session.begin():
        result = promote(session, NAME, version, "roc_auc", {"roc_auc": 0.9}, None, 0.0, uri, NOW)
    assert result.promoted


def _events(store: str) -> pd.DataFrame:
    with open_session(store) as session:
        assert audit.verify(session).ok
        return audit.trail(session)


def test_list_shows_lineage_and_label_counts_by_source(
    challenger: Challenger, labels: pd.DataFrame, uri: str, store: str
) -> None:
    first = _register(challenger, uri)
    _first_champion(store, uri, first)
    second = _register(challenger, uri, parent=first)

    newest, oldest = governance.list_versions(NAME, uri)
    assert (newest.version, oldest.version) == (second, first)
    assert (oldest.aliases, newest.aliases) == (("champion",), ())
    assert (oldest.parent, newest.parent) == (None, first)
    assert (newest.policy, newest.strategy) == ("test-policy", "mix")
    assert newest.window["end"] == AS_OF.isoformat()
    assert newest.metrics == pytest.approx(
        {f"holdout_{k}": v for k, v in challenger.metrics.items()}, nan_ok=True
    )
    train = set(challenger.split.train.transaction_ids)
    chargebacks = labels[(labels["source"] == "chargeback") & (labels["known_at"] < AS_OF)]
    # every review sits in the training part; exploration answers predate the window; the
    # active-learning answers were not known when the model was trained
    assert newest.label_counts == {
        "review": 40,
        "chargeback": len(train & set(chargebacks["transaction_id"])),
        "exploration": 0,
    }
    # rows older than the holdout all have their chargeback (or "known legit") by now: a
    # reviewed row counts under both sources
    assert newest.label_counts["chargeback"] == len(train)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = str(client.get_model_version(NAME, str(second)).run_id)
    assert client.get_run(run_id).data.tags["labels.review"] == "40"
    assert client.get_run(run_id).data.params["parent"] == str(first)
    assert governance.list_versions("no-such-model", uri) == []


def test_promote_and_rollback_move_the_alias_and_audit_it(
    challenger: Challenger, uri: str, store: str
) -> None:
    v1, v2, v3 = (_register(challenger, uri) for _ in range(3))
    _first_champion(store, uri, v1)
    registry.set_alias(NAME, registry.CHALLENGER, v2, tracking_uri=uri)

    def champion() -> int | None:
        return registry.champion_version(NAME, tracking_uri=uri)

    def promote_by_hand(version: int, at: datetime) -> governance.AliasMove:
        with open_session(store) as session, session.begin():
            return governance.promote_version(session, NAME, version, "alice", uri, at, "ticket-7")

    def roll_back(at: datetime) -> governance.AliasMove:
        with open_session(store) as session, session.begin():
            return governance.rollback(session, NAME, "bob", uri, at)

    moved = promote_by_hand(v3, NOW)
    assert (moved.moved, moved.champion_version, moved.previous_champion) == (True, v3, v1)
    assert champion() == v3
    moved = promote_by_hand(v2, NOW + timedelta(minutes=1))
    assert (champion(), moved.previous_champion) == (v2, v3)
    assert registry.alias_version(NAME, registry.CHALLENGER, tracking_uri=uri) is None
    assert f"champion v{v3} -> v{v2}" in moved.message()

    again = promote_by_hand(v2, NOW + timedelta(minutes=2))
    assert (again.moved, champion()) == (False, v2)

    back = roll_back(NOW + timedelta(minutes=3))
    assert (back.moved, back.champion_version, back.previous_champion) == (True, v3, v2)
    assert champion() == v3
    back = roll_back(NOW + timedelta(minutes=4))  # two promotions undone: the first champion
    assert (champion(), back.previous_champion) == (v1, v3)
    with pytest.raises(FraudloopError, match="nothing to roll back to"):
        roll_back(NOW + timedelta(minutes=5))
    assert champion() == v1

    events = _events(store)
    moves = events[events["event_type"].isin(["promotion", "promotion_manual", "rollback"])]
    assert moves["event_type"].tolist() == [
        "promotion",
        "promotion_manual",
        "promotion_manual",
        "rollback",
        "rollback",
    ]
    assert moves["actor"].tolist()[1:] == ["alice", "alice", "bob", "bob"]
    assert moves["model_version"].tolist() == [str(v) for v in (v1, v3, v2, v3, v1)]
    assert [d["previous_champion"] for d in moves["details"].tolist()[1:]] == [v1, v3, v2, v3]
    assert moves["details"].iloc[1]["note"] == "ticket-7"
    assert (back.audit_event_id, moved.audit_event_id) == (
        moves["event_id"].iloc[4],
        moves["event_id"].iloc[2],
    )


def test_an_unknown_version_is_refused(challenger: Challenger, uri: str, store: str) -> None:
    first = _register(challenger, uri)
    _first_champion(store, uri, first)
    with (
        pytest.raises(FraudloopError, match=f"no version {first + 41}"),
        open_session(store) as session,
        session.begin(),
    ):
        governance.promote_version(session, NAME, first + 41, "alice", uri, NOW)
    assert registry.champion_version(NAME, tracking_uri=uri) == first
    assert _events(store)["event_type"].tolist() == ["promotion"]
    with (
        pytest.raises(FraudloopError, match="nothing to roll back to"),
        open_session(store) as session,
    ):
        governance.rollback(session, NAME, "bob", uri, NOW)


@pytest.fixture
def cli_home(tmp_path: Path, uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("FRAUDLOOP_HOME", str(home))
    monkeypatch.setenv("FRAUDLOOP_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("COLUMNS", "250")  # the whole table on one line per version
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def test_cli_lists_promotes_and_rolls_back(
    challenger: Challenger, uri: str, cli_home: Path
) -> None:
    store = get_settings().database_url
    migrate(store)
    first = _register(challenger, uri)
    _first_champion(store, uri, first)
    second = _register(challenger, uri, parent=first)
    runner = CliRunner()

    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    cells = [line.split("│")[1:-1] for line in listed.output.splitlines() if "│" in line]
    rows = {row[0].strip(): [c.strip() for c in row] for row in cells}
    n_train = len(challenger.split.train.y)
    assert rows[f"v{second}"][4:6] == [
        f"chargeback {n_train:,}, exploration 0, review 40",
        f"v{first}",
    ]
    assert rows[f"v{first}"][1] == "champion" and rows[f"v{first}"][5] == "-"

    promoted = runner.invoke(app, ["models", "promote", str(second), "--actor", "carol"])
    assert promoted.exit_code == 0, promoted.output
    assert f"champion v{first} -> v{second}" in promoted.output
    assert registry.champion_version(NAME, tracking_uri=uri) == second

    rolled = runner.invoke(app, ["models", "rollback", "--note", "bad precision"])
    assert rolled.exit_code == 0, rolled.output
    assert f"rolled back, champion v{second} -> v{first}" in rolled.output
    assert registry.champion_version(NAME, tracking_uri=uri) == first

    for args, said in (
        (["models", "rollback"], "nothing to roll back to"),
        (["models", "promote", "42"], "no version 42"),
    ):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2, refused.output
        assert said in refused.output and "Traceback" not in refused.output
    events = _events(store)
    manual = events[events["event_type"].isin(["promotion_manual", "rollback"])]
    assert manual["event_type"].tolist() == ["promotion_manual", "rollback"]
    assert manual["actor"].iloc[0] == "carol"
    assert manual["details"].iloc[1]["note"] == "bad precision"


def test_the_strategy_recorded_is_the_policys_or_router_only() -> None:
    policy = load_policy(get_settings().policy_file)
    section = getattr(policy, "active_learning", None)
    expected = str(section.strategy) if section is not None else "router-only"
    assert governance.selection_strategy(policy) == expected
    bare = policy.model_copy(update={"active_learning": None})
    assert governance.selection_strategy(bare) == "router-only"
