"""Chainlit's upload endpoint (`POST /project/file`), with an empty file accepted as what it is.

Chainlit's own handler cannot store a 0-byte file (`persist_file` refuses empty content with a ValueError,
HTTP 500), and the browser then shows only "Upload failed". Here an empty file is stored as an empty
file, so the message that carries it arrives and the chat can say "“x.txt” is empty". Every other upload
goes to Chainlit's handler unchanged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from chainlit.server import UserParam, validate_file_upload
from chainlit.server import upload_file as chainlit_upload_file
from fastapi import HTTPException, UploadFile
from fastapi.responses import JSONResponse, Response


async def upload_file(
    current_user: UserParam, session_id: str, file: UploadFile, ask_parent_id: str | None = None
) -> Response:
    """Store an uploaded file in the session; an empty one too (with the same checks as Chainlit's)."""
    if file.size is None or file.size > 0:
        result: Response = await chainlit_upload_file(current_user, session_id, file, ask_parent_id)
        return result
    from chainlit.session import WebsocketSession

    session = WebsocketSession.get_by_id(session_id)
    if not session:
        raise HTTPException(status_code=404, detail="Session not found")
    if current_user and (not session.user or session.user.identifier != current_user.identifier):
        raise HTTPException(status_code=401, detail="You are not authorized to upload files for this session")
    if not file.filename or not file.content_type:
        raise HTTPException(status_code=400, detail="An upload needs a file name and a content type")
    spec: Any = session.files_spec.get(ask_parent_id, None)
    try:
        validate_file_upload(file, spec=spec)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty"
        empty.touch()
        stored = await session.persist_file(name=file.filename, mime=file.content_type, path=str(empty))
    return JSONResponse(content=stored)
