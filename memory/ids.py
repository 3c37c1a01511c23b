"""User ids as the memory store sees them: validated, then encoded into one safe namespace label."""

from __future__ import annotations

import unicodedata

MAX_USER_ID_CHARS = 256
MEMORY_ROOT = "memories"


class InvalidUserId(ValueError):
    """The user id is empty, too long, not a string or holds control characters."""


def validate_user_id(user_id: object) -> str:
    """Return `user_id` unchanged if it is a usable opaque id, else raise `InvalidUserId`.

    Any printable text is allowed (dots, slashes, `*`, `%`, `_`, quotes...): ids are never
    interpolated into a query or a pattern; they are hex-encoded into a namespace label.
    """
    if not isinstance(user_id, str):
        raise InvalidUserId(f"a user id must be a string, not {type(user_id).__name__}")
    if not user_id.strip():
        raise InvalidUserId("a user id must not be empty")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidUserId(f"a user id must be at most {MAX_USER_ID_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in user_id):
        raise InvalidUserId("a user id must not contain control characters")
    return user_id


def user_label(user_id: str) -> str:
    """The namespace label of a user: `u` + the hex of its UTF-8 bytes (only `[0-9a-f]`, never a dot)."""
    return "u" + validate_user_id(user_id).encode("utf-8").hex()


def memory_namespace(user_id: str) -> tuple[str, str]:
    """`("memories", <label>)`: the one namespace that holds this user's memories and nobody else's."""
    return (MEMORY_ROOT, user_label(user_id))


def user_id_from_namespace(namespace: tuple[str, ...]) -> str | None:
    """The user id a memory namespace belongs to, or None if it is not one of ours."""
    if len(namespace) != 2 or namespace[0] != MEMORY_ROOT or not namespace[1].startswith("u"):
        return None
    try:
        user_id = bytes.fromhex(namespace[1][1:]).decode("utf-8")
        return user_id if user_label(user_id) == namespace[1] else None
    except (ValueError, InvalidUserId):
        return None
