"""The supervisor's history fits a small context window (the embedded model's n_ctx), newest first."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage

from agents.supervisor.state import estimated_tokens, fitting


def test_estimate_never_undercounts_what_a_tokenizer_would_see() -> None:
    assert estimated_tokens("hello world") >= 3
    assert estimated_tokens("你好世界" * 100) >= 400  # one token per CJK character, at least


def test_fitting_keeps_the_newest_messages_that_fit_and_always_the_last() -> None:
    chat = [HumanMessage("a" * 3000), AIMessage("b" * 3000), HumanMessage("c" * 300)]
    kept = fitting(chat, 1200)
    assert [m.text[0] for m in kept] == ["b", "c"]
    assert sum(estimated_tokens(m.text) for m in kept) <= 1200
    only = fitting([HumanMessage("x" * 30_000 + "the question?")], 500)
    assert len(only) == 1 and only[0].text.endswith("the question?")
    assert estimated_tokens(only[0].text) <= 500
