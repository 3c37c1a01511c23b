"""Login for the chat: password accounts, an auth proxy's header, or OAuth providers Chainlit knows.

Every way in ends at an account in `accounts.users.UserStore`; its opaque id (not the login name)
is the user id the agent layer sees.
"""

from __future__ import annotations

import logging
from typing import Any

import chainlit as cl
from chainlit.oauth_providers import get_configured_oauth_providers
from starlette.datastructures import Headers

from accounts.users import User, UserError, UserStore
from core.settings import AuthSettings

log = logging.getLogger(__name__)


def chat_user(user: User) -> cl.User:
    """The Chainlit user of an account; the account id travels in its metadata."""
    identifier = user.identifier if user.provider == "password" else f"{user.provider}:{user.identifier}"
    return cl.User(
        identifier=identifier, display_name=user.display_name, metadata={"id": user.id, "provider": user.provider}
    )


def register(settings: AuthSettings, users: UserStore) -> None:
    """Install the login callbacks that `settings` asks for (at startup, once)."""
    if settings.mode == "password":

        async def password_login(username: str, password: str) -> cl.User | None:
            try:
                user = await users.verify_password(username, password)
                if user is None and settings.first_login_creates_account:
                    user = await users.create_first_user(username, password)
                    if user is not None:
                        log.info("first login created the account %r", user.identifier)
            except UserError as exc:
                log.info("login refused: %s", exc)
                return None
            return None if user is None else chat_user(user)

        cl.password_auth_callback(password_login)

    elif settings.mode == "header":

        async def header_login(headers: Headers) -> cl.User | None:
            subject = headers.get(settings.header_name)
            if not subject:
                return None
            try:
                return chat_user(await users.ensure_external("header", subject))
            except UserError as exc:
                log.info("header login refused: %s", exc)
                return None

        cl.header_auth_callback(header_login)

    if get_configured_oauth_providers():

        async def oauth_login(
            provider_id: str,
            token: str,
            raw_user_data: dict[str, Any],
            default_user: cl.User,
            id_token: str | None = None,
        ) -> cl.User | None:
            subject = str(raw_user_data.get("id") or raw_user_data.get("sub") or default_user.identifier)
            try:
                user = await users.ensure_external(
                    f"oauth:{provider_id}"[:32], subject, display_name=default_user.display_name
                )
            except UserError as exc:
                log.info("oauth login refused: %s", exc)
                return None
            return chat_user(user)

        cl.oauth_callback(oauth_login)
