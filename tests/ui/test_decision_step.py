"""The Supervisor step's words: what was chosen, by which stage, how sure, how fast."""

from __future__ import annotations

from agents.supervisor.events import Decided
from chainlit_app.render import decision_text, decision_title

TITLES = {"code": "Code", "vision": "Vision"}


def test_a_fast_decision_names_the_specialist_stage_confidence_and_time() -> None:
    event = Decided(("code",), "fast", 0.0084, 0.973)
    assert decision_title(event, TITLES) == "Supervisor: Code (fast, 0.97, 8 ms)"
    assert decision_text(event, TITLES) == (
        "Handed to Code, chosen by the fast classifier with confidence 0.97, in 8 ms."
    )


def test_a_direct_answer_and_several_specialists_and_a_slow_model() -> None:
    direct = Decided((), "fast", 0.006, 0.88)
    assert decision_title(direct, TITLES) == "Supervisor: answered directly (fast, 0.88, 6 ms)"
    assert decision_text(direct, TITLES).startswith("Answered directly, chosen by the fast classifier")
    both = Decided(("vision", "code"), "model", 1.42, attempts=2)
    assert decision_title(both, TITLES) == "Supervisor: Vision + Code (model, 1.4 s)"
    assert "needed 2 attempts" in decision_text(both, TITLES)
    fell_back = Decided((), "model", 3.0, attempts=2, fell_back=True)
    assert "could not be used" in decision_text(fell_back, TITLES)


def test_a_command_says_so() -> None:
    event = Decided(("code",), "command", 0.0001, 1.0)
    assert decision_title(event, TITLES) == "Supervisor: Code (command, 0 ms)"
    assert "chosen by your command" in decision_text(event, TITLES)
