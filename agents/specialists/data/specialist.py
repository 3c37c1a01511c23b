"""The data specialist: questions about a chat's uploaded tables, answered by a query run in DuckDB.

The SQL comes from the deterministic planner (`sql.plan`: "average X per Y", "total X", "how many
rows", ...) when the question is one of those, else from the chat model asked for JSON (grammar-
constrained on llama.cpp) with the tables' schema and three sample rows: the model never sees the
table itself. Either way the SQL is validated (`sql.validate`) and run read-only on the chat's own
tables; the answer names which path wrote the query, shows it, and shows the result as a table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.base import Services, SpecialistResult, TurnContext
from agents.specialists.data.prompts import NO_QUERY, NO_TABLES, SQL_SYSTEM_PROMPT, SQL_USER_PROMPT
from agents.specialists.data.sql import plan, validate
from agents.specialists.data.tables import Result, Table, TableError, TableStore, table_kind
from core.errors import describe_server_error
from core.models import SUPERVISOR, ModelClient
from core.settings import Settings

MODEL = SUPERVISOR  # SQL is written by the supervisor's model when the planner cannot
SHOWN_ROWS = 50
SQL_SCHEMA = {
    "type": "object",
    "properties": {"sql": {"type": "string"}},  # no length bounds: llama.cpp's grammar server drops the connection
    "required": ["sql"],
}

log = logging.getLogger(__name__)


class DataSpecialist:
    """Answers questions over the asking user's tables of this chat, with the query shown."""

    name = "data"

    def __init__(self, store: TableStore, client: ModelClient | None, settings: Settings) -> None:
        self.store = store
        self._client = client
        model = client.model_name if client is not None else ""
        self._system = settings.prompt("data.system", model, SQL_SYSTEM_PROMPT)
        self._user = settings.prompt("data.user", model, SQL_USER_PROMPT)

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        files = [f for f in ctx.files if table_kind(f) is not None]
        if not files:
            return SpecialistResult(content=NO_TABLES)
        try:
            tables = await asyncio.to_thread(self.store.load, ctx.user_id, ctx.thread_id, files)
        except TableError as exc:
            return SpecialistResult(content=str(exc), error=True)
        question = request.strip()
        if not question or question.lower() in ("list", "tables", "schema", "describe"):
            return SpecialistResult(content=describe_tables(tables))
        planned = plan(question, tables)
        if planned is not None:
            sql, path = planned.sql, f"the deterministic planner ({planned.description})"
        else:
            try:
                sql = await self._model_sql(question, tables)
            except TableError as exc:
                return SpecialistResult(content=no_query(tables, str(exc)), error=True)
            path = f"the chat model ({self._client.model_name if self._client else 'none'}), validated"
        try:
            result = await asyncio.to_thread(self.store.query, tables, sql)
        except TableError as exc:
            return SpecialistResult(content=f"{exc}\n\n{query_block(sql)}", error=True)
        return SpecialistResult(content=answer_text(result, sql, path, tables))

    async def _model_sql(self, question: str, tables: Sequence[Table]) -> str:
        """SQL from the chat model as JSON; one retry with the validation error. Raises TableError."""
        if self._client is None:
            raise TableError("no chat model is configured to write other queries")
        schema = "\n".join(t.describe() for t in tables)
        messages: list[BaseMessage] = [
            SystemMessage(self._system.format(schema=schema)),
            HumanMessage(self._user.format(question=question)),
        ]
        mode = self._client.endpoint.structured_output
        response_format: dict[str, Any] = (
            {"type": "json_object", "schema": SQL_SCHEMA}
            if mode == "json_object"
            else {"type": "json_schema", "json_schema": {"name": "query", "schema": SQL_SCHEMA, "strict": False}}
        )
        error = "no reply"
        for _ in range(2):
            try:
                reply = await self._client.llm.bind(
                    response_format=response_format, stream=False, max_tokens=300
                ).ainvoke(messages, config={"run_name": "data.sql"})
            except Exception as exc:
                reason = describe_server_error(exc, what=self._client.where, timeout=self._client.endpoint.timeout)
                raise TableError(reason or f"the model failed ({type(exc).__name__})") from exc
            text = reply.text if isinstance(reply, AIMessage) else str(reply)
            try:
                sql = str(json.loads(text)["sql"])
                return validate(sql, {t.name for t in tables})
            except (ValueError, KeyError, TypeError) as exc:
                error = f"the model's reply was not a query ({type(exc).__name__})"
            except TableError as exc:
                error = str(exc)
            messages = [*messages, AIMessage(content=text), HumanMessage(f"That query cannot run: {error} Try again.")]
        raise TableError(error)


def describe_tables(tables: Sequence[Table]) -> str:
    lines = [f"This chat has {len(tables)} table{'s' if len(tables) != 1 else ''}:"]
    for t in tables:
        cols = ", ".join(f"`{c.name}` ({c.type.lower()})" for c in t.columns)
        lines.append(f"- `{t.name}` from “{t.file_name}”: {t.rows} rows; columns {cols}")
    lines.append("Ask e.g. “average <column> per <column>” or “how many rows”.")
    return "\n".join(lines)


def no_query(tables: Sequence[Table], reason: str) -> str:
    table = tables[-1]
    measures = [c.name for c in table.columns if c.numeric and not c.name.lower().endswith("id")]
    numeric = measures or [c.name for c in table.columns if c.numeric] or [table.columns[0].name]
    other = [c.name for c in table.columns if not c.numeric] or [table.columns[0].name]
    examples = f"“average {numeric[0]} per {other[0]}”, “total {numeric[0]}”, “how many rows”"
    return NO_QUERY.format(s="s" if len(tables) > 1 else "", reason=reason.rstrip("."), examples=examples) + (
        "\n\n" + describe_tables(tables)
    )


def query_block(sql: str) -> str:
    return f"```sql\n{sql}\n```"


def format_value(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4g}"
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:80]


def markdown_table(result: Result, limit: int = SHOWN_ROWS) -> str:
    if not result.columns:
        return "(no columns)"
    head = "| " + " | ".join(format_value(c) for c in result.columns) + " |"
    rule = "|" + "|".join("---" for _ in result.columns) + "|"
    body = ["| " + " | ".join(format_value(v) for v in row) + " |" for row in result.rows[:limit]]
    return "\n".join([head, rule, *body]) if body else head + "\n" + rule + "\n(no rows)"


def answer_text(result: Result, sql: str, path: str, tables: Sequence[Table]) -> str:
    rows = len(result.rows)
    more = " (first rows shown)" if result.truncated or rows > SHOWN_ROWS else ""
    if rows == 1 and len(result.columns) == 1:
        lead = f"**{format_value(result.rows[0][0])}** ({result.columns[0]})"
    else:
        lead = f"{rows}{'+' if result.truncated else ''} row{'s' if rows != 1 else ''}{more}:"
    sources = ", ".join(f"`{t.name}` ({t.rows} rows, from “{t.file_name}”)" for t in tables)
    return (
        f"{lead}\n\n{markdown_table(result)}\n\nQuery written by {path}, run in DuckDB on {sources}:\n"
        f"{query_block(sql)}"
    )


def build(services: Services) -> DataSpecialist | None:
    """Over DuckDB (the `docs` extra); the supervisor's model writes the queries the planner cannot."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return None
    return DataSpecialist(TableStore(services.settings), services.model(MODEL), services.settings)
