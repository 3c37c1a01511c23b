"""`ensemble-admin`: manage password accounts from a console (create, set password, list, delete)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence
from typing import TextIO

from accounts.users import UserError, UserStore
from core.console import run_console
from core.settings import Settings
from memory.factory import open_memory_service


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ensemble-admin", description="Manage Ensemble's user accounts.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-user", help="create a password account")
    create.add_argument("name", help="login name (case-insensitive)")
    create.add_argument("--display-name", help="name shown in the app (default: NAME as typed)")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    password = commands.add_parser("set-password", help="replace an account's password")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    commands.add_parser("list-users", help="list accounts")
    remove = commands.add_parser("delete-user", help="delete a password account and its memories")
    remove.add_argument("name")
    remove.add_argument("--keep-memories", action="store_true", help="keep the user's long-term memories")
    return parser


def _read_password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise UserError("the passwords do not match")
    return first


async def _run(args: argparse.Namespace, settings: Settings, out: TextIO, stdin: TextIO) -> int:
    store = await UserStore.from_settings(settings)
    try:
        if args.command == "create-user":
            user = await store.create_user(
                args.name, _read_password(args.password_stdin, stdin), display_name=args.display_name
            )
            print(f"created user {user.identifier} (id {user.id})", file=out)
        elif args.command == "set-password":
            if not await store.set_password(args.name, _read_password(args.password_stdin, stdin)):
                raise UserError(f"no password account named {args.name!r}")
            print(f"password of {args.name} changed", file=out)
        elif args.command == "list-users":
            for user in await store.list_users():
                print(f"{user.id}  {user.provider:<12} {user.identifier}  ({user.display_name})", file=out)
        elif args.command == "delete-user":
            deleted = await store.delete_user(args.name)
            if deleted is None:
                raise UserError(f"no password account named {args.name!r}")
            forgotten = ""
            if not args.keep_memories:
                forgotten = f" and {await _forget_memories(settings, deleted.id)} memories"
            print(f"deleted user {deleted.identifier} (id {deleted.id}){forgotten}", file=out)
        return 0
    finally:
        await store.aclose()


async def _forget_memories(settings: Settings, user_id: str) -> int:
    """Erase a deleted account's long-term memories (opened without embeddings: nothing to recall)."""
    quiet = settings.model_copy(update={"memory": settings.memory.model_copy(update={"vector": "off"})})
    memory = await open_memory_service(quiet)
    if memory is None:
        return 0
    try:
        return await memory.forget_all(user_id)
    finally:
        await memory.aclose()


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    """Console entry point; returns the exit status (0 done, 1 refused, 2 bad usage)."""
    args = _parser().parse_args(argv)
    return run_console(
        "ensemble-admin", lambda: asyncio.run(_run(args, settings or Settings(), sys.stdout, sys.stdin)), (UserError,)
    )


if __name__ == "__main__":
    sys.exit(main())
