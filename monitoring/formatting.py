"""Numbers as the reports print them: `n/a` for what could not be measured, never 0."""

from monitoring.model_quality import Rate


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def num(value: float | None, fmt: str = ",.1f") -> str:
    return "n/a" if value is None else format(value, fmt)


def count(value: int | float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def interval(r: Rate) -> str:
    """`12.0% (9.1%-15.6%, n=300)`."""
    if r.rate is None or r.low is None or r.high is None:
        return f"n/a (n={r.n})"
    return f"{r.rate:.1%} ({r.low:.1%}-{r.high:.1%}, n={r.n:,})"


def share_change(now: float | None, before: float | None) -> str:
    """A share's change in percentage points."""
    if now is None or before is None:
        return "n/a"
    return f"{(now - before) * 100:+.1f} pp"


def relative_change(now: float | None, before: float | None) -> str:
    if now is None or before is None or before == 0:
        return "n/a"
    return f"{now / before - 1:+.1%}"
