"""Rate limits of the online API: per API key, and velocity per card and per terminal.

Limits come from the policy (`limits.rate`); each process counts on its own (moving windows in
memory, the `limits` library), so N workers take up to N times a limit: a shared store (Redis,
which `limits` supports) is the step up. Every refusal is counted, and audited once per scope,
identity and minute, so a flood cannot flood the audit trail.
"""

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import HTTPException, status
from limits import RateLimitItem, parse, storage, strategies
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.policy import RateLimits
from fraudloop.schema import Transaction


@dataclass
class Limiter:
    per_key: RateLimitItem
    per_card: RateLimitItem
    per_terminal: RateLimitItem
    limiter: strategies.MovingWindowRateLimiter = field(
        default_factory=lambda: strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    )
    refused: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_policy(cls, rules: RateLimits) -> "Limiter":
        return cls(parse(rules.per_api_key), parse(rules.per_card), parse(rules.per_terminal))

    def over(self, key_name: str, transactions: list[Transaction]) -> "Refusal | None":
        """What is over its limit in this request (the API key, or any of its cards or
        terminals), or None; the whole request is then refused (all or nothing)."""
        hits = [("api_key", key_name, self.per_key)]
        hits += [
            ("card", _digest(t.card_number), self.per_card) for t in transactions if t.card_number
        ]
        hits += [("terminal", t.terminal_id, self.per_terminal) for t in transactions]
        for scope, identity, item in hits:
            if not self.limiter.hit(item, scope, identity):
                self.refused[scope] += 1
                reset = self.limiter.get_window_stats(item, scope, identity).reset_time
                return Refusal(scope, identity, str(item), max(1, int(reset - time.time()) + 1))
        return None


@dataclass(frozen=True)
class Refusal:
    scope: str
    identity: str
    limit: str
    retry_after: int

    def audit(self, session: Session, now: datetime) -> None:
        """Once per scope, identity and minute."""
        window = now.replace(second=0, microsecond=0).isoformat()
        event = audit.event(
            f"ratelimit:{self.scope}:{self.identity}:{window}",
            "rate_limited",
            "api",
            now,
            scope=self.scope,
            identity=self.identity,
            limit=self.limit,
        )
        audit.append(session, [event])

    def error(self) -> HTTPException:
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"{self.scope} over its limit of {self.limit}",
            headers={"Retry-After": str(self.retry_after)},
        )


def _digest(card: str) -> str:
    """Cards are counted by a digest: the raw number stays out of memory dumps and the audit."""
    return hashlib.sha256(card.encode()).hexdigest()[:16]
