"""The one clock: the store keeps naive UTC datetimes, so "now" is naive UTC everywhere."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
