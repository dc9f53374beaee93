"""The review screen (Label Studio label config) and the rules an annotation must satisfy.

Label Studio saves whatever the API sends (unknown choices, missing rationale), and the browser
cannot make the rationale depend on the task's recommendation, so `validate_annotation` is
where fraudloop enforces the review rules, for UI and API annotations alike.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

DECISION = "decision"
RATIONALE = "rationale"
TARGET = "summary"  # the object tag every control points at (`to_name` in results)

# reviewer choice -> audit-trail decision (SPEC "Audit trail")
OUTCOMES = {
    "approve": "human_approve",
    "reject": "human_reject",
    "escalate": "escalated",
    "request_info": "request_info",
    "annotate": "annotate",  # a note for the next reviewer: decides nothing, the case stays open
}
RECOMMENDATIONS = ("approve", "reject")

LABEL_CONFIG = f"""<View>
  <Header value="$headline" size="4"/>
  <Header value="$notice" size="6"/>
  <Text name="{TARGET}" value="$summary"/>
  <Header value="Top reasons" size="5"/>
  <Text name="reasons" value="$reasons"/>
  <Header value="Transaction (redacted)" size="5"/>
  <Table name="transaction" value="$transaction"/>
  <Header value="Similar past cases decided by reviewers" size="5"/>
  <HyperText name="similar" value="$similar_html" inline="true"/>
  <Header value="Reviewer notes" size="5"/>
  <Text name="notes" value="$reviewer_notes"/>
  <Choices name="{DECISION}" toName="{TARGET}" choice="single-radio" showInline="true"
           required="true" requiredMessage="Choose a decision">
    <Choice value="approve" hint="legitimate transaction"/>
    <Choice value="reject" hint="fraud"/>
    <Choice value="escalate" hint="hand to a senior analyst"/>
    <Choice value="request_info" hint="ask for more information"/>
    <Choice value="annotate" hint="add a note for the next reviewer, decide nothing"/>
  </Choices>
  <View visibleWhen="choice-selected" whenTagName="{DECISION}">
    <Header value="$rationale_prompt" size="6"/>
    <TextArea name="{RATIONALE}" toName="{TARGET}" rows="3" maxSubmissions="1" editable="true"/>
  </View>
</View>
"""


class ReviewOutcome(BaseModel):
    """A valid reviewer decision; the recommendation is kept beside it, never merged into it."""

    model_config = ConfigDict(frozen=True)

    choice: str
    decision: str
    recommendation: str
    rationale: str | None
    is_override: bool


class ValidationProblem(BaseModel):
    """Why an annotation cannot count as a decision (it stays open for a reviewer to fix)."""

    model_config = ConfigDict(frozen=True)

    reason: str


def needs_rationale(choice: str, recommendation: str) -> bool:
    """Anything but agreeing with the model needs words: overrides, escalations, info requests,
    and a note (whose words are the whole point)."""
    return choice != recommendation


def rationale_prompt(recommendation: str) -> str:
    """The hint shown above the rationale box, since the config cannot depend on task data."""
    others = ", ".join(c for c in OUTCOMES if needs_rationale(c, recommendation))
    return (
        f"The model recommends {recommendation}: a rationale is required if you choose {others} "
        "(for annotate, it is the note the next reviewer reads)."
    )


def validate_annotation(
    result: Sequence[Mapping[str, Any]], recommendation: str
) -> ReviewOutcome | ValidationProblem:
    """Turn a Label Studio `result` list into an outcome, or say what is wrong with it."""
    if recommendation not in RECOMMENDATIONS:
        raise ValueError(f"recommendation must be one of {RECOMMENDATIONS}, got {recommendation!r}")
    choices = chosen(result)
    if len(choices) != 1:
        return ValidationProblem(reason=f"expected exactly one decision, got {choices}")
    choice = choices[0]
    if choice not in OUTCOMES:
        return ValidationProblem(reason=f"unknown decision {choice!r}")
    rationale = rationale_text(result)
    if rationale is None and choice == "annotate":
        return ValidationProblem(reason="'annotate' needs the note, typed in the rationale box")
    if rationale is None and needs_rationale(choice, recommendation):
        return ValidationProblem(
            reason=f"{choice!r} against the recommendation {recommendation!r} needs a rationale"
        )
    return ReviewOutcome(
        choice=choice,
        decision=OUTCOMES[choice],
        recommendation=recommendation,
        rationale=rationale,
        is_override=choice in RECOMMENDATIONS and choice != recommendation,
    )


def chosen(result: Sequence[Mapping[str, Any]]) -> list[str]:
    """The decision choice(s) in an annotation result."""
    return _values(result, DECISION, "choices")


def rationale_text(result: Sequence[Mapping[str, Any]]) -> str | None:
    """The rationale typed into an annotation, None when blank."""
    return "\n".join(_values(result, RATIONALE, "text")).strip() or None


def _values(result: Sequence[Mapping[str, Any]], from_name: str, key: str) -> list[str]:
    return [
        str(v)
        for item in result
        if item.get("from_name") == from_name
        for v in (item.get("value") or {}).get(key) or []
    ]
