"""The router cascade: facts, the fast classifier on the real local embedder, and the model only when unsure.

The classifier runs on the real all-MiniLM-L6-v2 (the app's embedder); the supervisor models here are
scripted, and only for the graph's logic (when is the model asked, what does the Decided event say).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from agents.eval.dataset import ROUTER_DATASET, load_dataset
from agents.runtime import Ensemble
from agents.specialists.base import FileRef, SpecialistSpec
from agents.specialists.registry import all_specs
from agents.supervisor.classifier import (
    DIRECT,
    DIRECT_FILE,
    FastClassifier,
    RecentVectors,
    exemplar_sets,
    read_exemplars,
    softmax,
)
from agents.supervisor.events import Decided, StepStarted, TurnEvent, TurnFinished
from agents.supervisor.router import turn_facts
from core.embeddings import Embedder
from core.local_embeddings import LocalEmbedder, LocalModelUnavailable
from core.models import ModelClients
from core.settings import RouterSettings, Settings
from tests.supervisor.test_graph_scripted import RecordingSpecialist, spec_for
from tests.support.scripted import ScriptedChatModel, scripted_client


def poet_spec(name: str, built: Any, exemplars: tuple[str, ...]) -> SpecialistSpec:
    """A specialist defined only here, known to the router by the exemplars its spec carries."""
    return SpecialistSpec(
        name=name,
        title="Poet",
        description="writes poems",
        enable_hint="-",
        asks_for=re.compile("(?!)"),
        build=lambda services: built,
        exemplars=exemplars,
    )


BROWSER_MESSAGES = {
    "Hello! In one sentence, what can you do?": DIRECT,
    "What is the capital of France?": DIRECT,
    "Write a Python function that reverses a string.": "code",
}


@pytest.fixture(scope="module")
async def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 the app loads (ONNX, CPU)."""
    try:
        return await LocalEmbedder.load()
    except LocalModelUnavailable as exc:
        pytest.fail(f"the local embedding model is part of the dev install: {exc}")


@pytest.fixture(scope="module")
async def classifier(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> FastClassifier:
    sets = exemplar_sets(all_specs())
    return await FastClassifier.build(embedder, sets, RouterSettings(), tmp_path_factory.mktemp("cache"))


def image(name: str = "cat.png") -> FileRef:
    return FileRef(name, name, f"/tmp/{name}", "image/png", 10, "image")


def document(name: str = "report.pdf") -> FileRef:
    return FileRef(name, name, f"/tmp/{name}", "application/pdf", 10, "document")


# --- facts and exemplars ---------------------------------------------------------------------------
def test_facts_offer_only_specialists_that_can_apply() -> None:
    specs = all_specs()
    plain = turn_facts(specs)
    assert "vision" not in plain.names and "documents" not in plain.names
    assert {"code", "search", "image", "memory"} <= set(plain.names)
    assert plain.candidates == ()

    with_image = turn_facts(specs, new_files=[image()])
    assert "vision" in with_image.names and with_image.candidates == ("vision",)
    assert "vision" in turn_facts(specs, recent_image=True).names, "an image in the message before counts"

    with_doc = turn_facts(specs, new_files=[document()])
    assert with_doc.candidates == ("documents",) and "documents" in with_doc.names
    assert "documents" in turn_facts(specs, documents=True).names
    assert turn_facts(specs, documents=True).candidates == (), "documents in scope is no reason to choose them"


def test_every_registered_specialist_and_a_spec_carrying_exemplars_has_exemplars() -> None:
    poet = poet_spec("poet-from-settings", None, ("Write a sonnet about the sea.", "Compose a villanelle on time."))
    sets = exemplar_sets([*all_specs(), poet])
    assert set(sets) == {DIRECT, *(spec.name for spec in all_specs()), "poet-from-settings"}
    assert sets["poet-from-settings"] == ["Write a sonnet about the sea.", "Compose a villanelle on time."]
    assert all(len(texts) >= 20 for name, texts in sets.items() if name != "poet-from-settings"), {
        name: len(texts) for name, texts in sets.items()
    }
    assert all(not text.startswith("#") for texts in sets.values() for text in texts)
    assert len(read_exemplars(DIRECT_FILE)) >= 40


def test_no_evaluation_request_is_an_exemplar() -> None:
    exemplars = {text.lower().strip() for texts in exemplar_sets(all_specs()).values() for text in texts}
    for path in ROUTER_DATASET.parent.glob("*.yaml"):
        if path.name.startswith("prompts"):
            continue
        copied = [item.text for item in load_dataset(path) if item.text.lower().strip() in exemplars]
        assert not copied, f"{path.name} items copied into exemplars: {copied}"


def test_softmax_is_a_distribution_and_temperature_sharpens_it() -> None:
    soft = softmax({"a": 0.5, "b": 0.4}, 0.1)
    sharp = softmax({"a": 0.5, "b": 0.4}, 0.01)
    assert sum(soft.values()) == pytest.approx(1.0) and sum(sharp.values()) == pytest.approx(1.0)
    assert sharp["a"] > soft["a"] > 0.5


# --- the classifier on the real embedder ----------------------------------------------------------
async def test_the_first_messages_of_a_new_user_route_right(classifier: FastClassifier, embedder: Embedder) -> None:
    facts = turn_facts(all_specs(), documents=False)
    for text, expected in BROWSER_MESSAGES.items():
        vector = (await embedder.embed([text]))[0]
        scores = classifier.classify(vector, facts.names)
        label, confidence = scores.best
        assert label == expected, (text, scores.probabilities[:3])
        assert 0 < confidence <= 1
        assert sum(p for _, p in scores.probabilities) == pytest.approx(1.0)


async def test_unavailable_labels_are_never_chosen(classifier: FastClassifier, embedder: Embedder) -> None:
    vector = (await embedder.embed(["Summarize the PDF I uploaded."]))[0]
    offered = turn_facts(all_specs(), documents=True).names
    assert classifier.classify(vector, offered).best[0] == "documents"
    without = classifier.classify(vector, turn_facts(all_specs(), documents=False).names)
    assert "documents" not in dict(without.probabilities)


async def test_an_attached_image_makes_vision_likely(classifier: FastClassifier, embedder: Embedder) -> None:
    settings = RouterSettings()
    facts = turn_facts(all_specs(), new_files=[image()])
    vector = (await embedder.embed(["hmm, any idea?"]))[0]
    boosted = classifier.classify(vector, facts.names, dict.fromkeys(facts.candidates, settings.attachment_boost))
    assert boosted.best[0] == "vision"


async def test_recent_vectors_embed_a_turns_request_once(embedder: Embedder) -> None:
    calls: list[int] = []

    class Counting:
        model_name, dimension = embedder.model_name, embedder.dimension

        async def embed(self, texts: Any) -> list[list[float]]:
            calls.append(len(texts))
            return await embedder.embed(texts)

        async def aclose(self) -> None: ...

    shared = RecentVectors(Counting())
    first = await shared.embed(["what is my name?"])
    again = await shared.embed(["what is my name?"])
    assert first == again and calls == [1]
    await shared.embed(["a", "b"])
    assert calls == [1, 2], "batches pass through"


# --- the cascade in the graph (scripted supervisor models) ----------------------------------------
async def start(tmp_path: Path, llm: ScriptedChatModel, specs: list[SpecialistSpec], **router: Any) -> Ensemble:
    settings = Settings(data_dir=tmp_path, _env_file=None, router=RouterSettings(**router))  # type: ignore[call-arg]
    models = ModelClients({"supervisor": scripted_client(llm)})
    return await Ensemble.start(settings, models=models, specs=specs, with_documents=False, with_memory=False)


async def run_turn(service: Ensemble, text: str, files: tuple[FileRef, ...] = ()) -> list[TurnEvent]:
    return [e async for e in service.stream_turn(thread_id="t1", user_id="u1", text=text, files=files)]


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Ensemble] = []

    async def make(*args: Any, **kwargs: Any) -> Ensemble:
        made.append(await start(tmp_path, *args, **kwargs))
        return made[-1]

    yield make
    for service in made:
        await service.aclose()


def decided(events: list[TurnEvent]) -> Decided:
    found = [e for e in events if isinstance(e, Decided)]
    assert len(found) == 1, events
    return found[0]


def code_and_search() -> tuple[list[SpecialistSpec], RecordingSpecialist]:
    code = RecordingSpecialist("code", "def reverse(s): return s[::-1]")
    return [spec_for("code", code), spec_for("search", RecordingSpecialist("search", "found"))], code


async def test_scripted_a_sure_fast_decision_asks_no_model(services: Any) -> None:
    specs, code = code_and_search()
    model = ScriptedChatModel(script=[])  # any call would fail the turn
    service = await services(model, specs, threshold=0.3)
    events = await run_turn(service, "Write a Python function that reverses a string.")
    decision = decided(events)
    assert (decision.specialists, decision.chosen_by) == (("code",), "fast")
    assert decision.confidence is not None and decision.confidence >= 0.3
    assert decision.seconds > 0  # its speed is measured by `ensemble-eval` and benchmarks/router_turn.py
    assert model.calls == [], "the fast stage decided: no model call"
    assert code.requests == ["Write a Python function that reverses a string."], "forwarded unchanged"
    assert isinstance(events[-1], TurnFinished)
    assert events.index(decision) < next(i for i, e in enumerate(events) if isinstance(e, StepStarted))


async def test_scripted_direct_is_decided_fast_and_answered_by_the_supervisor(services: Any) -> None:
    specs, code = code_and_search()
    model = ScriptedChatModel(script=[AIMessage(content="Paris.")])  # the answer, not a decision
    service = await services(model, specs, threshold=0.3)
    events = await run_turn(service, "What is the capital of France?")
    assert (decided(events).specialists, decided(events).chosen_by) == ((), "fast")
    assert len(model.calls) == 1 and "response_format" not in model.call_kwargs[0]
    assert events[-1] == TurnFinished("Paris.") and code.requests == []


async def test_scripted_an_unsure_fast_stage_asks_the_model(services: Any) -> None:
    specs, code = code_and_search()
    reply = AIMessage(content=json.dumps({"tasks": [{"specialist": "code"}]}))  # no rewrite: forwarded as is
    model = ScriptedChatModel(script=[reply])
    service = await services(model, specs, threshold=1.0)  # never sure enough
    events = await run_turn(service, "Write a Python function that reverses a string.")
    assert (decided(events).specialists, decided(events).chosen_by) == (("code",), "model")
    assert len(model.calls) == 1
    offered = model.call_kwargs[0]["response_format"]["schema"]["properties"]["tasks"]["items"]
    assert offered["required"] == ["specialist"], "a request is the model's to rewrite, not to restate"
    assert code.requests == ["Write a Python function that reverses a string."]


async def test_scripted_model_mode_always_asks_and_facts_mode_never(services: Any) -> None:
    specs, _ = code_and_search()
    model = ScriptedChatModel(script=[AIMessage(content=json.dumps({"tasks": [{"specialist": "search"}]}))])
    service = await services(model, specs, mode="model")
    assert decided(await run_turn(service, "Write a Python function that reverses a string.")).chosen_by == "model"

    answer = ScriptedChatModel(script=[AIMessage(content="Here is how.")])
    facts_only = await services(answer, specs, mode="facts")
    decision = decided(await run_turn(facts_only, "Write a Python function that reverses a string."))
    assert (decision.specialists, decision.chosen_by) == ((), "facts")
    assert len(answer.calls) == 1 and "response_format" not in answer.call_kwargs[0], "one call: the answer"


async def test_scripted_a_command_overrides_the_cascade(services: Any) -> None:
    specs, _ = code_and_search()
    search = RecordingSpecialist("search", "found it")
    specs[1] = spec_for("search", search)
    service = await services(ScriptedChatModel(script=[]), specs)
    events = await run_turn(service, "/search Write a Python function that reverses a string.")
    assert (decided(events).specialists, decided(events).chosen_by) == (("search",), "command")
    assert search.requests == ["Write a Python function that reverses a string."]


async def test_scripted_a_spec_carrying_exemplars_is_chosen_by_the_fast_stage(services: Any) -> None:
    poet = RecordingSpecialist("poet", "Roses")
    exemplars = (
        "Write a sonnet about autumn.",
        "Compose a haiku on the sea.",
        "I want a poem with rhymes about love.",
        "Write verses in iambic pentameter.",
        "A limerick about a cat, please, in verse.",
    )
    spec = poet_spec("poet", poet, exemplars)
    code_specs, _ = code_and_search()
    service = await services(ScriptedChatModel(script=[]), [*code_specs, spec], threshold=0.0)
    events = await run_turn(service, "Please compose a sonnet about the winter night.")
    assert (decided(events).specialists, decided(events).chosen_by) == (("poet",), "fast")
    assert poet.requests == ["Please compose a sonnet about the winter night."]
