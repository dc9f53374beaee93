"""The review screen parses, asks for what build_task provides, and its rules hold."""

import re
import xml.etree.ElementTree as ET
from datetime import datetime

import pytest

from labeling.label_config import (
    LABEL_CONFIG,
    OUTCOMES,
    ReviewOutcome,
    ValidationProblem,
    validate_annotation,
)
from labeling.tasks import build_task
from simulation.reviewers import ui_result


def _result(choices: list[str], rationale: str | None = None) -> list[dict]:
    result = [
        {
            "from_name": "decision",
            "to_name": "summary",
            "type": "choices",
            "value": {"choices": choices},
        }
    ]
    if rationale is not None:
        result.append(
            {
                "from_name": "rationale",
                "to_name": "summary",
                "type": "textarea",
                "value": {"text": [rationale]},
            }
        )
    return result


def test_config_parses_with_required_decision_and_rationale_box() -> None:
    root = ET.fromstring(LABEL_CONFIG)
    choices = root.find(".//Choices[@name='decision']")
    assert choices is not None and choices.get("required") == "true"
    assert [c.get("value") for c in choices.findall("Choice")] == list(OUTCOMES)
    box = root.find(".//View[@visibleWhen='choice-selected']/TextArea[@name='rationale']")
    assert box is not None
    assert root.find(".//Table[@value='$transaction']") is not None


def test_every_config_variable_is_in_the_task() -> None:
    """Label Studio rejects an import whose tasks lack a variable the config uses."""
    case = {
        "case_id": "c1",
        "transaction_id": "t1",
        "snapshot": {"amount": 10.0},
        "score": 0.8,
        "recommendation": "reject",
        "reasons": ["a", "b", "c"],
        "model_version": "1",
        "sla_due_at": datetime(2026, 1, 1),
    }
    variables = set(re.findall(r'value="\$(\w+)"', LABEL_CONFIG))
    assert variables <= set(build_task(case)["data"])


@pytest.mark.parametrize(
    ("choice", "recommendation", "decision", "is_override"),
    [
        ("reject", "reject", "human_reject", False),
        ("approve", "approve", "human_approve", False),
    ],
)
def test_agreeing_needs_no_rationale(
    choice: str, recommendation: str, decision: str, is_override: bool
) -> None:
    outcome = validate_annotation(_result([choice]), recommendation)
    assert outcome == ReviewOutcome(
        choice=choice,
        decision=decision,
        recommendation=recommendation,
        rationale=None,
        is_override=is_override,
    )


@pytest.mark.parametrize(
    ("choice", "recommendation"),
    [
        ("approve", "reject"),
        ("reject", "approve"),
        ("escalate", "reject"),
        ("request_info", "approve"),
    ],
)
def test_anything_but_agreeing_needs_a_rationale(choice: str, recommendation: str) -> None:
    assert isinstance(validate_annotation(_result([choice]), recommendation), ValidationProblem)
    assert isinstance(
        validate_annotation(_result([choice], "  "), recommendation), ValidationProblem
    )
    outcome = validate_annotation(_result([choice], "card confirmed stolen"), recommendation)
    assert isinstance(outcome, ReviewOutcome)
    assert outcome.rationale == "card confirmed stolen"
    assert outcome.decision == OUTCOMES[choice]
    assert outcome.is_override == (choice in ("approve", "reject"))


@pytest.mark.parametrize("recommendation", ["approve", "reject"])
def test_annotate_is_a_note_that_needs_its_text(recommendation: str) -> None:
    for blank in (None, "  "):
        problem = validate_annotation(_result(["annotate"], blank), recommendation)
        assert problem == ValidationProblem(
            reason="'annotate' needs the note, typed in the rationale box"
        )
    outcome = validate_annotation(_result(["annotate"], "called the bank"), recommendation)
    assert isinstance(outcome, ReviewOutcome)
    assert (outcome.decision, outcome.rationale, outcome.is_override) == (
        "annotate",
        "called the bank",
        False,
    )


@pytest.mark.parametrize("choices", [[], ["maybe"], ["approve", "reject"]])
def test_unknown_missing_or_several_choices_are_problems(choices: list[str]) -> None:
    problem = validate_annotation(_result(choices, "because"), "reject")
    assert isinstance(problem, ValidationProblem)


def test_unknown_recommendation_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="recommendation"):
        validate_annotation(_result(["approve"]), "block")


@pytest.mark.parametrize("choice", ["approve", "reject"])
@pytest.mark.parametrize("recommendation", ["approve", "reject"])
def test_simulated_reviewer_writes_what_the_rules_accept(choice: str, recommendation: str) -> None:
    outcome = validate_annotation(ui_result(choice, recommendation), recommendation)
    assert isinstance(outcome, ReviewOutcome) and outcome.choice == choice
