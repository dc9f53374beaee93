"""Model governance: what each registered version was made from, and the `champion` alias moved
by a person (promote a version, roll back to the champion before), audited.

The retrain flow moves `champion` by the promotion rule (`models.promotion.promote`); this is
the manual path beside it. Both keep the registry's champion history
(`models.registry.champion_history`), so a rollback returns to the champion before the current
one whoever put it there. Each move appends its audit event to the caller's session before it
moves the alias: a move that fails raises, and the caller's transaction drops the event with it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.errors import FraudloopError
from fraudloop.policy import Policy
from models.challenger import (
    LABELS_TAG,
    NO_PARENT,
    PARENT_TAG,
    POLICY_TAG,
    ROUTER_ONLY,
    STRATEGY_TAG,
)
from models.registry import (
    CHALLENGER,
    alias_version,
    champion_history,
    champion_version,
    set_champion,
)

PROMOTE, ROLLBACK = "promote", "rollback"  # what a move was; ROLLBACK is also its event type
MANUAL_PROMOTION = "promotion_manual"
_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


@dataclass(frozen=True)
class VersionInfo:
    """One registered version and its lineage; None where a version predates the tag."""

    version: int
    aliases: tuple[str, ...]
    created: datetime  # naive UTC
    metrics: dict[str, float]
    label_counts: dict[str, int]  # training rows with a label from each source
    parent: int | None
    policy: str | None
    strategy: str | None
    window: dict[str, str]  # the data_window.* tags: start, end, n_train, ...


@dataclass(frozen=True)
class AliasMove:
    """What a promote or rollback did to `champion`, in words a person can check."""

    name: str
    action: str  # PROMOTE or ROLLBACK
    moved: bool
    champion_version: int
    previous_champion: int | None
    reason: str
    audit_event_id: str | None = None

    def message(self) -> str:
        if not self.moved:
            return f"{self.name}: nothing moved, {self.reason}"
        before = "none" if self.previous_champion is None else f"v{self.previous_champion}"
        verb = "rolled back" if self.action == ROLLBACK else "promoted"
        return (
            f"{self.name}: {verb}, champion {before} -> v{self.champion_version} "
            f"({self.reason}; audit event {self.audit_event_id})"
        )


def selection_strategy(policy: Policy) -> str:
    """The policy's active-learning strategy; a policy without the section reviews only what the
    router sends (read defensively: policies older than the section have none)."""
    name = getattr(getattr(policy, "active_learning", None), "strategy", None)
    return str(name) if name else ROUTER_ONLY


def list_versions(name: str, tracking_uri: str, limit: int | None = None) -> list[VersionInfo]:
    """The registered versions of `name`, newest first (none registered: an empty list)."""
    client = _client(tracking_uri)
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            return []
        raise
    found = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    return [_info(client, mv, aliases) for mv in found[:limit]]


def promote_version(
    session: Session,
    name: str,
    version: int,
    actor: str,
    tracking_uri: str,
    now: datetime,
    note: str | None = None,
) -> AliasMove:
    """Make an existing version the champion, whatever its metrics (a person decided); the
    version already champion moves nothing and writes no event."""
    client = _client(tracking_uri)
    _require_version(client, name, version)
    current = champion_version(name, tracking_uri=tracking_uri)
    if current == version:
        return AliasMove(
            name, PROMOTE, False, version, current, f"v{version} is already the champion"
        )
    history = [*champion_history(name, tracking_uri=tracking_uri), version]
    reason = f"manual promotion by {actor}"
    key = f"{MANUAL_PROMOTION}:{name}:{version}:{now.isoformat()}"
    event_id = _audit(
        session, key, MANUAL_PROMOTION, actor, now, name, version, current, reason, note
    )
    set_champion(name, version, history, tracking_uri=tracking_uri)
    if alias_version(name, CHALLENGER, tracking_uri=tracking_uri) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    return AliasMove(name, PROMOTE, True, version, current, reason, event_id)


def rollback(
    session: Session,
    name: str,
    actor: str,
    tracking_uri: str,
    now: datetime,
    note: str | None = None,
) -> AliasMove:
    """Give `champion` back to the version that held it before the current one; refused when
    the registry recorded no earlier champion."""
    current = champion_version(name, tracking_uri=tracking_uri)
    if current is None:
        raise FraudloopError(
            f"model '{name}' has no champion to roll back: `fraudloop models list` shows its "
            "versions, `fraudloop models promote VERSION` sets one"
        )
    earlier = champion_history(name, tracking_uri=tracking_uri)[:-1]
    if not earlier:
        raise FraudloopError(
            f"nothing to roll back to: v{current} is the first champion of '{name}' the registry "
            "recorded; choose a version with `fraudloop models promote VERSION`"
        )
    target = earlier[-1]
    _require_version(_client(tracking_uri), name, target)
    reason = f"rollback by {actor} from v{current}"
    key = f"{ROLLBACK}:{name}:{current}->{target}:{now.isoformat()}"
    event_id = _audit(session, key, ROLLBACK, actor, now, name, target, current, reason, note)
    set_champion(name, target, earlier, tracking_uri=tracking_uri)
    return AliasMove(name, ROLLBACK, True, target, current, reason, event_id)


def _audit(  # noqa: PLR0913 - one audit row's fields
    session: Session,
    key: str,
    event_type: str,
    actor: str,
    now: datetime,
    name: str,
    version: int,
    previous: int | None,
    reason: str,
    note: str | None,
) -> str:
    event = audit.event(
        key,
        event_type,
        actor,
        now,
        model_version=str(version),
        model_name=name,
        champion_version=version,
        previous_champion=previous,
        reason=reason,
        note=note,
    )
    audit.append(session, [event])
    return str(event["event_id"])


def _client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _require_version(client: MlflowClient, name: str, version: int) -> None:
    """A version the registry holds, or an error naming the one it does not."""
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            raise FraudloopError(
                f"model '{name}' has no version {version} in the registry: `fraudloop models "
                "list` shows the registered versions (FRAUDLOOP_MODEL_NAME names the model)"
            ) from exc
        raise


def _info(client: MlflowClient, mv: ModelVersion, aliases: dict[str, str]) -> VersionInfo:
    tags = dict(mv.tags or {})
    parent = tags.get(PARENT_TAG)
    return VersionInfo(
        version=int(mv.version),
        aliases=tuple(sorted(a for a, v in aliases.items() if str(v) == str(mv.version))),
        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).replace(tzinfo=None),
        metrics=_metrics(client, mv.run_id),
        label_counts={
            k.removeprefix(LABELS_TAG): int(v) for k, v in tags.items() if k.startswith(LABELS_TAG)
        },
        parent=None if parent in (None, NO_PARENT) else int(parent),
        policy=tags.get(POLICY_TAG),
        strategy=tags.get(STRATEGY_TAG),
        window={
            k.removeprefix("data_window."): v
            for k, v in tags.items()
            if k.startswith("data_window.")
        },
    )


def _metrics(client: MlflowClient, run_id: str | None) -> dict[str, float]:
    """The run's metrics; a version whose run is gone has none."""
    if not run_id:
        return {}
    try:
        return dict(client.get_run(run_id).data.metrics)
    except MlflowException:
        return {}
