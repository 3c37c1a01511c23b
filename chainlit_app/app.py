"""Ensemble's Chainlit handlers: translate a turn's typed events into messages, steps, elements.

Run with `ensemble up` (or `python -m chainlit_app.serve`, or `chainlit run chainlit_app/app.py`). No agent
logic lives here: startup builds one `agents.runtime.Ensemble`, and every handler asks it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.config import config as chainlit_config
from chainlit.mcp import McpConnection
from chainlit.oauth_providers import get_configured_oauth_providers
from chainlit.server import app as http_app
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from mcp import ClientSession

from accounts.users import UserStore
from agents.runtime import Ensemble
from agents.specialists.base import Artifact, FileRef
from agents.specialists.registry import Entry
from agents.supervisor.events import (
    AnswerToken,
    Decided,
    Notice,
    StepFinished,
    StepStarted,
    StepToken,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)
from agents.supervisor.metrics import TurnMetrics
from chainlit_app import auth, guards
from chainlit_app.files import file_route
from chainlit_app.persistence import EnsembleDataLayer, LocalStorageClient, ensure_schema
from chainlit_app.render import (
    artifact_elements,
    decision_text,
    decision_title,
    file_kind,
    progress_text,
    safe_name,
    utc_now,
    with_source_links,
)
from chainlit_app.streaming import TokenBatcher
from core.databases import history_url
from core.limits import ConcurrencyCap, Limits
from core.settings import Settings
from core.setup_lock import schema_setup_lock
from rag.types import IngestProgress

log = logging.getLogger("chainlit_app.app")  # chainlit runs this file by path, so __name__ is a path
LOCAL_USER = "local"  # the single user of an instance without authentication
SUPERVISOR_STEP = "supervisor"  # the key of a turn's Supervisor step among its steps


def ensemble() -> Ensemble:
    """What startup built (kept on the HTTP app's state, FastAPI's place for it)."""
    running: Ensemble = http_app.state.ensemble
    return running


async def healthz() -> JSONResponse:
    """Liveness: the process serves HTTP."""
    return JSONResponse({"status": "ok"})


async def readyz() -> JSONResponse:
    """Readiness: the service started and its own stores answer; specialists' states for operators."""
    running: Ensemble | None = getattr(http_app.state, "ensemble", None)
    embedded = running.embedded_model() if running else None
    ready = running is not None and await running.stores_ready() and (embedded is None or embedded.ready)
    body: dict[str, Any] = {
        "status": "ready" if ready else "starting",
        "specialists": running.status() if running else {},
        "models": running.model_health() if running else {},
    }
    if embedded is not None:
        body["embedded_model"] = {"state": embedded.state, "detail": embedded.detail, "restarts": embedded.restarts}
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process's turns (agents/supervisor/metrics.py), for in-cluster scrapers:
    a request that came through a proxy or load balancer (X-Forwarded-For) is not served."""
    turn_metrics: TurnMetrics | None = getattr(http_app.state, "metrics", None)
    if "x-forwarded-for" in request.headers:
        return Response(status_code=404)
    if turn_metrics is None:
        return Response(status_code=503)
    body, content_type = turn_metrics.exposition()
    return Response(body, media_type=content_type)


def turn_slots() -> ConcurrencyCap:
    limits: Limits = http_app.state.limits
    return limits.turns


@cl.on_app_startup
async def startup() -> None:
    settings = Settings()
    limits = Limits.from_settings(settings.limits, settings.uploads.max_bytes)
    http_app.state.limits = limits
    guards.harden_cookies(settings.auth)
    allow_user_mcp_servers(settings.mcp.user_allowed_urls)
    # Chainlit serves its UI from a catch-all route, so our routes go in front of it (and of its own
    # routes that guards.py checks first).
    ours = [APIRoute(path, endpoint, methods=["GET"]) for path, endpoint in
            (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics))]
    ours += [file_route(lambda: getattr(http_app.state, "storage", None)), *guards.routes(limits)]
    http_app.router.routes[0:0] = ours
    # Replicas starting together on one new PostgreSQL database set up its schemas one at a time.
    async with schema_setup_lock(settings):
        running = await Ensemble.start(settings)
        http_app.state.ensemble = running
        http_app.state.metrics = TurnMetrics(circuit_states=running.model_health)
        signing_in = settings.auth.mode != "none" or bool(get_configured_oauth_providers())
        if signing_in:
            users = await UserStore.from_settings(settings)
            http_app.state.users = users
            await ensure_schema(history_url(settings))
    if signing_in:
        auth.register(settings.auth, users)
        url = history_url(settings)
        storage = LocalStorageClient(settings.data_dir / "files")
        layer = EnsembleDataLayer(url, storage, on_delete_thread=forget_chat)
        if moved := await layer.adopt_unowned_files(storage):
            log.info("moved %d stored files from unknown/ to their owners", moved)
        http_app.state.storage = storage
        cl.data_layer(lambda: layer)
    status = running.status()
    off = sorted(name for name, state in status.items() if state not in ("ready", "opening"))
    log.info(
        "Ensemble ready; specialists: %s%s",
        ", ".join(sorted(set(status) - set(off))),
        f"; not configured: {', '.join(off)} (how to enable each: /readyz)" if off else "",
    )


@cl.on_app_shutdown
async def shutdown() -> None:
    running: Ensemble | None = getattr(http_app.state, "ensemble", None)
    if running is not None:
        await running.aclose()
    users: UserStore | None = getattr(http_app.state, "users", None)
    if users is not None:
        await users.aclose()


async def forget_chat(thread_id: str, user_id: str) -> None:
    """A deleted chat: what the agent layer kept for it, and the copies of its uploads."""
    await ensemble().delete_thread(thread_id, user_id)
    folder = uploads_folder(user_id, thread_id)
    await asyncio.to_thread(shutil.rmtree, folder, True)


def uploads_folder(user_id: str, thread_id: str) -> Path:
    return ensemble().settings.data_dir / "uploads" / safe_name(user_id) / safe_name(thread_id)


def current_user_id() -> str:
    user = cl.user_session.get("user")
    if isinstance(user, cl.User):
        return str(user.metadata.get("id") or user.identifier)
    return LOCAL_USER


def turn_run() -> str | None:
    """The id of Chainlit's run of this turn (`on_message`), the parent of the turn's answer message: the
    turn's steps are its children too, so that they show in the order they came, above the answer
    (a step without a parent would show after the whole run, below the answer)."""
    step = cl.context.current_step
    return None if step is None else str(step.id)


def turn_owner() -> str:
    """Whose turn it is, for the cap of concurrent turns: the account, or the tab when nobody signs in."""
    if isinstance(cl.user_session.get("user"), cl.User):
        return current_user_id()
    return f"session:{cl.context.session.id}"


async def uploaded_files(message: cl.Message, user_id: str, thread_id: str) -> list[FileRef]:
    """The message's files, copied out of Chainlit's session folder (emptied on restart) into the data dir."""
    folder = uploads_folder(user_id, thread_id)
    files = []
    for element in message.elements or []:
        if element.path is None:
            continue
        target = folder / f"{element.id}-{safe_name(element.name)}"
        await asyncio.to_thread(_copy, Path(element.path), target)
        mime = element.mime or "application/octet-stream"
        files.append(
            FileRef(
                id=element.id,
                name=element.name,
                path=str(target),
                mime=mime,
                size=target.stat().st_size,
                kind=file_kind(mime, element.name),
            )
        )
    return files


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


async def accept_uploads(message: cl.Message, user_id: str, thread_id: str) -> list[FileRef]:
    """Check and ingest the message's files, each document's progress shown as a step."""
    files = await uploaded_files(message, user_id, thread_id)
    if not files:
        return []
    steps: dict[str, cl.Step] = {}

    async def progress(update: IngestProgress) -> None:
        step = steps.get(update.file_name)
        if step is None:
            step = cl.Step(name=f"Reading {update.file_name}", type="tool", show_input=False, parent_id=turn_run())
            step.start = utc_now()
            steps[update.file_name] = step
            await step.send()
        step.output = progress_text(update)
        if update.stage in ("done", "failed", "cancelled", "duplicate"):
            step.end = utc_now()
            step.is_error = update.stage == "failed"
        await step.update()

    uploads = await ensemble().accept_uploads(files, user_id=user_id, thread_id=thread_id, progress=progress)
    for text in uploads.messages:
        await cl.Message(content=text, author="Ensemble").send()
    return list(uploads.accepted)


@cl.on_chat_resume
async def on_chat_resume(thread: Any) -> None:
    """Nothing to restore by hand: the chat's LangGraph thread has the same id as the Chainlit thread."""


@cl.set_starters
async def starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    return [
        cl.Starter(label="Write code", message="/code Write a Python function that checks if a word is a palindrome."),
        cl.Starter(label="Just chat", message="Give me three tips for a productive morning."),
    ]


@cl.on_message
@guards.capped_turns(turn_slots, turn_owner)
async def on_message(message: cl.Message) -> None:
    # The answer message is created on first use, so that steps started before it sort above it.
    answer: cl.Message | None = None
    steps: dict[str, cl.Step] = {}

    def answer_message() -> cl.Message:
        nonlocal answer
        if answer is None:
            answer = cl.Message(content="", author="Ensemble")
        return answer

    user_id, thread_id = current_user_id(), cl.context.session.thread_id
    files = await accept_uploads(message, user_id, thread_id)
    if not message.content.strip() and not files:
        return
    text = message.content.strip() or "I have shared these files."
    # Tokens go out batched (chainlit_app/streaming.py): the answer's, and each step's.
    batchers = {"": TokenBatcher(lambda chunk: answer_message().stream_token(chunk))}

    def step_batcher(step_id: str) -> TokenBatcher:
        if step_id not in batchers:
            batchers[step_id] = TokenBatcher(steps[step_id].stream_token)
        return batchers[step_id]

    # The decision shows first, above the steps and the answer it led to: sent once, decided, when the
    # decision is the turn's first event (the usual case); else sent as "Deciding ..." before that event.
    supervisor = cl.Step(name="Supervisor", type="tool", show_input=False, parent_id=turn_run())
    supervisor.start = utc_now()
    supervisor.output = "Deciding who takes this turn ..."
    steps[SUPERVISOR_STEP] = supervisor
    shown = False
    try:
        turn = ensemble().stream_turn(
            thread_id=thread_id, user_id=user_id, text=text, files=files, connected=connected_servers()
        )
        async for event in http_app.state.metrics.observe(turn):
            if not shown:
                shown = True
                if isinstance(event, Decided):
                    await decided(supervisor, event).send()
                    continue
                await supervisor.send()
            match event:
                case AnswerToken(text=token):
                    await batchers[""].add(token)
                case StepToken(step_id=step_id, text=token):
                    await step_batcher(step_id).add(token)
                case _:
                    for batcher in batchers.values():
                        await batcher.flush()
                    await show(event, steps, answer_message)
    finally:
        for batcher in batchers.values():
            batcher.cancel()
        if shown and supervisor.end is None:  # no decision was made (no model, or the turn failed first)
            await supervisor.remove()


# --- the user's own MCP servers (Chainlit's MCP button): kept in this chat session only -------------
MCP_KEY = "mcp_servers"


def allow_user_mcp_servers(allowed_urls: list[str]) -> None:
    """Chainlit's MCP button, on when the settings name URL prefixes users may connect (none: off)."""
    mcp = chainlit_config.features.mcp
    mcp.enabled = bool(allowed_urls) or bool(mcp.servers)
    mcp.user_servers.enabled = bool(allowed_urls)
    mcp.user_servers.allowed_urls = list(allowed_urls)


def connected_servers() -> list[Entry]:
    """The specialists of the MCP servers this user connected in this chat session (no one else's)."""
    servers: dict[str, Entry] = cl.user_session.get(MCP_KEY) or {}
    return list(servers.values())


@cl.on_mcp_connect
async def on_mcp_connect(connection: McpConnection, session: ClientSession) -> None:
    """A server the user connected becomes a specialist of their turns; raising refuses the connection
    (Chainlit shows the message)."""
    entry = await ensemble().connect_mcp(connection.name, session, getattr(connection, "url", None))
    servers: dict[str, Entry] = dict(cl.user_session.get(MCP_KEY) or {})
    servers[connection.name] = entry
    cl.user_session.set(MCP_KEY, servers)
    await cl.Message(
        content=f"Connected your MCP server “{connection.name}”: {entry.spec.description} "
        f"Ask for it in your own words, or call a tool with `{entry.spec.command} <tool> {{json}}`.",
        author="Ensemble",
    ).send()


@cl.on_mcp_disconnect
async def on_mcp_disconnect(name: str, session: ClientSession) -> None:
    servers: dict[str, Entry] = dict(cl.user_session.get(MCP_KEY) or {})
    servers.pop(name, None)
    cl.user_session.set(MCP_KEY, servers)


async def show_tool_calls(step: cl.Step, artifacts: tuple[Artifact, ...]) -> None:
    """Each MCP tool call of a step as a step inside it: the tool, its arguments (input), its result."""
    for call in artifacts:
        if call.kind != "tool_call":
            continue
        seconds = call.meta.get("seconds")
        name = f"{call.name} ({seconds:.1f} s)" if isinstance(seconds, float) else call.name
        child = cl.Step(name=name, type="tool", parent_id=step.id, show_input="json")
        child.input = json.dumps(call.meta.get("arguments", {}), ensure_ascii=False, indent=1)
        child.output = call.content or ""
        child.is_error = bool(call.meta.get("error"))
        child.start = child.end = utc_now()
        await child.send()


def decided(step: cl.Step, event: Decided) -> cl.Step:
    """The turn's Supervisor step, saying what was decided."""
    titles = {spec.name: spec.title for spec in ensemble().registry.specs()}
    step.name = decision_title(event, titles)
    step.output = decision_text(event, titles)
    step.end = utc_now()
    return step


async def show(event: TurnEvent, steps: dict[str, cl.Step], answer_message: Callable[[], cl.Message]) -> None:
    """One event of a turn (other than a streamed token) as Chainlit steps and messages."""
    match event:
        case StepStarted():
            step = cl.Step(name=event.title, type="tool", show_input="text", parent_id=turn_run())
            step.input = event.input
            step.start = utc_now()
            steps[event.step_id] = step
            await step.send()
        case StepFinished():
            step = steps[event.step_id]
            step.output = event.output
            step.is_error = event.error
            step.end = utc_now()
            step.name = f"{step.name} ({event.seconds:.1f} s)"
            step.elements = artifact_elements(event.artifacts, for_step=True)
            await step.update()
            await show_tool_calls(step, event.artifacts)
        case Decided():
            await decided(steps[SUPERVISOR_STEP], event).update()
        case Notice(text=text):
            await cl.Message(content=text, author="Ensemble").send()
        case TurnFinished(content=content, artifacts=artifacts):
            final = answer_message()
            final.content = with_source_links(content, artifacts)
            final.elements = artifact_elements(artifacts, for_step=False)
            await final.send()
        case TurnFailed(message=error, partial=partial):
            final = answer_message()
            final.content = (partial + "\n\n" if partial else "") + f"**Error:** {error}"
            await final.send()
