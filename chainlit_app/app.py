"""Ensemble's Chainlit handlers: translate the agent service's events into messages, steps, elements.

Run with `ensemble up` (or `chainlit run chainlit_app/app.py`). No agent logic lives here.
"""

from __future__ import annotations

import logging

import chainlit as cl
from chainlit.server import app as http_app
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from agents.specialists.base import FileRef
from agents.supervisor.service import (
    AnswerToken,
    EnsembleService,
    Notice,
    StepFinished,
    StepStarted,
    StepToken,
    TurnFailed,
    TurnFinished,
)
from chainlit_app.render import artifact_elements, file_kind, utc_now
from core.settings import Settings

log = logging.getLogger(__name__)
LOCAL_USER = "local"  # the single user of an instance without authentication


def service() -> EnsembleService:
    """The service built at startup (kept on the HTTP app's state, FastAPI's place for it)."""
    ensemble: EnsembleService = http_app.state.ensemble
    return ensemble


async def healthz() -> JSONResponse:
    """Liveness: the process serves HTTP."""
    return JSONResponse({"status": "ok"})


async def readyz() -> JSONResponse:
    """Readiness: the service started and its own stores answer; specialists' states for operators."""
    ensemble: EnsembleService | None = getattr(http_app.state, "ensemble", None)
    ready = ensemble is not None and await ensemble.stores_ready()
    body = {"status": "ready" if ready else "starting", "specialists": ensemble.status() if ensemble else {}}
    return JSONResponse(body, status_code=200 if ready else 503)


@cl.on_app_startup
async def startup() -> None:
    # Chainlit serves its UI from a catch-all route, so probes go in front of it.
    for path, endpoint in (("/healthz", healthz), ("/readyz", readyz)):
        http_app.router.routes.insert(0, APIRoute(path, endpoint, methods=["GET"]))
    settings = Settings()
    http_app.state.ensemble = await EnsembleService.start(settings)
    log.info("Ensemble ready; specialists: %s", service().status())


@cl.on_app_shutdown
async def shutdown() -> None:
    ensemble: EnsembleService | None = getattr(http_app.state, "ensemble", None)
    if ensemble is not None:
        await ensemble.aclose()


def current_user_id() -> str:
    user = cl.user_session.get("user")
    if isinstance(user, cl.User):
        return str(user.metadata.get("id") or user.identifier)
    return LOCAL_USER


def uploaded_files(message: cl.Message) -> list[FileRef]:
    files = []
    for element in message.elements or []:
        if element.path is None:
            continue
        mime = element.mime or "application/octet-stream"
        files.append(
            FileRef(
                id=element.id,
                name=element.name,
                path=str(element.path),
                mime=mime,
                size=int(getattr(element, "size", 0) or 0),
                kind=file_kind(mime),
            )
        )
    return files


@cl.set_starters
async def starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    return [
        cl.Starter(label="Write code", message="/code Write a Python function that checks if a word is a palindrome."),
        cl.Starter(label="Just chat", message="Give me three tips for a productive morning."),
    ]


@cl.on_message
async def on_message(message: cl.Message) -> None:
    # The answer message is created on first use, so that steps started before it sort above it.
    answer: cl.Message | None = None
    steps: dict[str, cl.Step] = {}

    def answer_message() -> cl.Message:
        nonlocal answer
        if answer is None:
            answer = cl.Message(content="", author="Ensemble")
        return answer

    async for event in service().stream_turn(
        thread_id=cl.context.session.thread_id,
        user_id=current_user_id(),
        text=message.content,
        files=uploaded_files(message),
    ):
        match event:
            case AnswerToken(text=text):
                await answer_message().stream_token(text)
            case StepStarted():
                step = cl.Step(name=event.title, type="tool", show_input="text")
                step.input = event.input
                step.start = utc_now()
                steps[event.step_id] = step
                await step.send()
            case StepToken(step_id=step_id, text=text):
                await steps[step_id].stream_token(text)
            case StepFinished():
                step = steps[event.step_id]
                step.output = event.output
                step.is_error = event.error
                step.end = utc_now()
                step.name = f"{step.name} ({event.seconds:.1f} s)"
                step.elements = artifact_elements(event.artifacts, for_step=True)
                await step.update()
            case Notice(text=text):
                await cl.Message(content=text, author="Ensemble").send()
            case TurnFinished(content=content, artifacts=artifacts):
                final = answer_message()
                final.content = content
                final.elements = artifact_elements(artifacts, for_step=False)
                await final.send()
            case TurnFailed(message=error, partial=partial):
                final = answer_message()
                final.content = (partial + "\n\n" if partial else "") + f"**Error:** {error}"
                await final.send()
