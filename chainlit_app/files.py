"""`/files/<key>`: the files of a user's chats (uploads, generated images), served to that user only.

The key is checked for its shape, then the file is authorized on its *resolved* path: it must be a
regular file inside the caller's own folder of the store (chainlit_app/persistence.py), symlinks
followed. Anything else is a 404, so that other users' files cannot even be probed for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from chainlit.auth import get_current_user
from chainlit.user import PersistedUser
from fastapi import Depends
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute

from chainlit_app.persistence import FILES_ROUTE, LocalStorageClient

# Types a browser would run as a page of the app's origin: sent as downloads, never rendered inline.
ACTIVE_TYPES = ("text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
                "application/javascript", "text/javascript")


def file_route(storage: Callable[[], LocalStorageClient | None]) -> APIRoute:
    """The GET route for stored files; `storage` gives the store once startup has built it (or None)."""

    async def stored_file(key: str, user: Any = Depends(get_current_user)) -> Response:  # noqa: B008
        """An element file of one of the caller's own chats."""
        store = storage()
        if store is None or not isinstance(user, PersistedUser):
            return Response(status_code=404)
        path = await asyncio.to_thread(store.owned_file, key, user.id)
        if path is None:
            return Response(status_code=404)
        mime = store.mime_of(path)
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
        if mime in ACTIVE_TYPES:
            headers["Content-Security-Policy"] = "sandbox"
            return FileResponse(path, media_type=mime, headers=headers, filename=path.name)
        return FileResponse(path, media_type=mime, headers=headers)

    return APIRoute(f"{FILES_ROUTE}/{{key:path}}", stored_file, methods=["GET"])
