"""Checks in front of Chainlit's own routes: sign-in throttling, upload quotas, feedback ownership,
thread sharing (off), the session cookie's `Secure` flag, and the cap of concurrent turns per user.

Each route here takes the request first, checks it, then hands it to Chainlit's handler unchanged.
The limits are objects built at startup (core/limits.py); nothing here keeps state of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, cast

import chainlit as cl
import chainlit.auth.cookie as chainlit_cookie
from chainlit import server as chainlit_server
from chainlit.auth import get_current_user
from chainlit.config import config as chainlit_config
from chainlit.data import get_data_layer
from chainlit.types import DeleteFeedbackRequest, UpdateFeedbackRequest
from chainlit.user import PersistedUser
from fastapi import Depends, HTTPException, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordRequestForm
from starlette.datastructures import UploadFile as FormFile

from accounts.users import MAX_IDENTIFIER_CHARS, UserError, normalize_identifier
from chainlit_app import uploads
from chainlit_app.persistence import EnsembleDataLayer
from core.limits import ConcurrencyCap, Limits, wait_text
from core.settings import AuthSettings

TOO_MANY_SIGN_INS = "Too many sign-in attempts; try again in {wait}."
TOO_MANY_UPLOADS = "Too many uploads; try again in {wait}."
FILE_TOO_LARGE = "Files are limited to {size} MB."
NO_LENGTH = "An upload must say its size (Content-Length)."
TOO_MANY_TURNS = (
    "You already have {limit} answer(s) running. Wait for one to finish (or stop it), then send this again."
)
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and headers around the file, at most


def refusal(status: int, message: str, wait: float | None = None) -> JSONResponse:
    """Chainlit's error shape (`detail`, which its front-end shows), with Retry-After for a wait."""
    headers = {"Retry-After": wait_text(wait).split()[0]} if wait else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def account_key(username: str) -> str:
    """The account a sign-in is for, spelled as the user store spells it (so variants count together)."""
    try:
        return normalize_identifier(username)
    except UserError:
        return str(username).strip().lower()[:MAX_IDENTIFIER_CHARS]


def client_of(request: Request, limits: Limits) -> str:
    peer = request.client.host if request.client else None
    return limits.client_address(peer, request.headers.get("x-forwarded-for"))


def routes(limits: Limits) -> list[APIRoute]:
    """Routes that go in front of Chainlit's routes of the same path."""

    async def login(
        request: Request, response: Response, form_data: OAuth2PasswordRequestForm = Depends()  # noqa: B008
    ) -> Any:
        """Chainlit's password sign-in, throttled per account and per client address."""
        account, client = account_key(form_data.username), client_of(request, limits)
        wait = await limits.login.attempt(account, client)
        if wait:
            return refusal(429, TOO_MANY_SIGN_INS.format(wait=wait_text(wait)), wait)
        result = await chainlit_server.login(request, response, form_data)  # raises 401 on a wrong password
        await limits.login.succeeded(account, client)
        return result

    async def upload_file(
        request: Request,
        session_id: str,
        ask_parent_id: str | None = None,
        current_user: Any = Depends(get_current_user),  # noqa: B008
    ) -> Any:
        """The upload (chainlit_app/uploads.py), refused before the body is read when too large or too frequent."""
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return refusal(411, NO_LENGTH)
        quota = limits.uploads
        if int(length) > quota.max_file_bytes + MULTIPART_OVERHEAD:
            return refusal(413, FILE_TOO_LARGE.format(size=quota.max_file_bytes // (1024 * 1024)))
        who = current_user.identifier if current_user is not None else client_of(request, limits)
        wait = await quota.take(who, int(length))
        if wait:
            return refusal(429, TOO_MANY_UPLOADS.format(wait=wait_text(wait)), wait)
        form = await request.form(max_files=1, max_fields=4)
        try:
            file = form.get("file")
            if not isinstance(file, FormFile):
                return refusal(400, "The upload has no file.")
            # FastAPI's UploadFile only adds parameter metadata to the form's Starlette one
            return await uploads.upload_file(current_user, session_id, cast(UploadFile, file), ask_parent_id)
        finally:
            await form.close()

    async def update_feedback(
        request: Request, update: UpdateFeedbackRequest, current_user: Any = Depends(get_current_user)  # noqa: B008
    ) -> Any:
        """Feedback only on messages of the caller's own chats (Chainlit checks no ownership)."""
        layer, user = _layer_and_user(current_user)
        thread_id = await layer.step_thread_id(update.feedback.forId)
        if thread_id is None or await layer.thread_user_id(thread_id) != user.id:
            raise HTTPException(status_code=404, detail="Message not found")
        if update.feedback.id and await layer.feedback_thread_id(update.feedback.id) not in (None, thread_id):
            raise HTTPException(status_code=404, detail="Feedback not found")
        update.feedback.threadId = thread_id
        return await chainlit_server.update_feedback(request, update, current_user)

    async def delete_feedback(
        request: Request, payload: DeleteFeedbackRequest, current_user: Any = Depends(get_current_user)  # noqa: B008
    ) -> Any:
        layer, user = _layer_and_user(current_user)
        thread_id = await layer.feedback_thread_id(payload.feedbackId)
        if thread_id is None or await layer.thread_user_id(thread_id) != user.id:
            raise HTTPException(status_code=404, detail="Feedback not found")
        return await chainlit_server.delete_feedback(request, payload, current_user)

    async def sharing_off() -> Any:
        """Chainlit shares and serves shared chats (to anyone) even with sharing off in its config."""
        return refusal(404, "Sharing chats is off.")

    guarded = [
        APIRoute("/login", login, methods=["POST"]),
        APIRoute("/project/file", upload_file, methods=["POST"]),
        APIRoute("/feedback", update_feedback, methods=["PUT"]),
        APIRoute("/feedback", delete_feedback, methods=["DELETE"]),
    ]
    if not chainlit_config.features.allow_thread_sharing:
        guarded += [
            APIRoute("/project/thread/share", sharing_off, methods=["PUT"]),
            APIRoute("/project/share/{thread_id}", sharing_off, methods=["GET"]),
        ]
    return guarded


def _layer_and_user(current_user: Any) -> tuple[EnsembleDataLayer, PersistedUser]:
    layer = get_data_layer()
    if not isinstance(layer, EnsembleDataLayer):
        raise HTTPException(status_code=400, detail="Data persistence is not enabled")
    if not isinstance(current_user, PersistedUser):
        raise HTTPException(status_code=401, detail="Unauthorized")
    return layer, current_user


def harden_cookies(settings: AuthSettings) -> None:
    """Mark Chainlit's session cookies `Secure` when the app is served over https.

    Chainlit 2.12 (chainlit/auth/cookie.py) sets `Secure` only with `SameSite=none`, from a module
    variable read when its cookies are set; this keeps `SameSite=lax` and adds `Secure`.
    """
    if not hasattr(chainlit_cookie, "_cookie_secure"):
        raise RuntimeError("this Chainlit version sets its cookies differently; review chainlit_app/guards.py")
    if settings.cookies_secure:
        chainlit_cookie._cookie_secure = True


Handler = Callable[[cl.Message], Awaitable[None]]


def capped_turns(cap: Callable[[], ConcurrencyCap], user_id: Callable[[], str]) -> Callable[[Handler], Handler]:
    """Wrap a message handler so that each user has at most `cap().limit` turns running at once."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def limited(message: cl.Message) -> None:
            slots, user = cap(), user_id()
            with slots.slot(user) as granted:
                if not granted:
                    await cl.Message(content=TOO_MANY_TURNS.format(limit=slots.limit), author="Ensemble").send()
                    return
                await handler(message)

        return limited

    return decorate
