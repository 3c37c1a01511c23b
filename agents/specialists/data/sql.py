"""SQL for a question about a chat's tables: a deterministic planner first, validation always.

`plan` answers the common aggregate questions ("average X per Y", "total X", "how many rows", "max X
by Y") from the schema alone: the question only chooses among the tables' own column names and a
fixed set of functions, so no text of the user's ever becomes SQL. Anything else goes to the model
(`agents.specialists.data.specialist`), whose SQL `validate` checks with DuckDB's own parser: one
statement, a SELECT, reading only the chat's tables, no table functions or settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agents.specialists.data.tables import Column, Table, TableError

AGGREGATES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("avg", re.compile(r"\b(average|mean|avg)\b", re.I)),
    ("sum", re.compile(r"\b(total|sum|overall)\b", re.I)),
    ("max", re.compile(r"\b(max|maximum|highest|largest|biggest|top|most)\b", re.I)),
    ("min", re.compile(r"\b(min|minimum|lowest|smallest|least)\b", re.I)),
    ("median", re.compile(r"\bmedian\b", re.I)),
    ("count", re.compile(r"\b(how many|count|number of)\b", re.I)),
)
GROUP = re.compile(r"\b(?:per|by|for each|for every|in each|across|broken down by)\s+(?:the\s+)?([\w ]+)", re.I)
WORD = re.compile(r"[a-z0-9]+")
FORBIDDEN_FUNCTIONS = re.compile(
    r"\b(read_\w+|glob|parquet_\w+|sniff_csv|query_table|query|duckdb_\w+|pragma_\w+|getenv|current_setting|"
    r"which_secret|load|install|attach|copy|export|import)\s*\(",
    re.I,
)


@dataclass(frozen=True)
class Plan:
    sql: str
    description: str  # what the query computes, in words


def _words(text: str) -> list[str]:
    return [_singular(w) for w in WORD.findall(text.lower())]


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _mentions(text_words: Sequence[str], column: Column) -> int:
    """How well the question's words name `column`: all of its words, in order, scores their count."""
    names = _words(column.name.replace("_", " "))
    if not names:
        return 0
    n = len(names)
    for i in range(len(text_words) - n + 1):
        if list(text_words[i : i + n]) == names:
            return n * 10
    hits = sum(1 for w in names if w in text_words)
    return hits if hits == n else 0


def _best(text_words: Sequence[str], columns: Iterable[Column]) -> Column | None:
    scored = [(score, c) for c in columns if (score := _mentions(text_words, c))]
    if not scored:
        return None
    scored.sort(key=lambda sc: -sc[0])
    return scored[0][1]


def plan(question: str, tables: Sequence[Table]) -> Plan | None:
    """SQL for a plain aggregate question over one table, or None when the question is not one."""
    if not tables:
        return None
    words = _words(question)
    table = _choose_table(words, tables)
    aggregate = next((name for name, pattern in AGGREGATES if pattern.search(question)), None)
    if aggregate is None:
        return None
    group_column: Column | None = None
    group_words: list[str] = []
    match = GROUP.search(question)
    if match:
        group_words = _words(match.group(1))
        group_column = _best(group_words, table.columns)
    rest = [w for w in words if w not in group_words] if group_column else words
    numeric = [c for c in table.columns if c.numeric and c != group_column]
    measure = _best(rest, numeric)
    if aggregate == "count":
        if measure is not None and not re.search(r"\b(rows?|records?|entries|lines)\b", question, re.I):
            target, label = f"count({_quote(measure.name)})", f"number of {measure.name} values"
        else:
            target, label = "count(*)", "rows"
    else:
        if measure is None:
            return None
        target = f"{aggregate}({_quote(measure.name)})"
        label = f"{aggregate} of {measure.name}"
    alias = _quote(label if aggregate != "count" else ("count" if target == "count(*)" else label))
    source = _quote(table.name)
    if group_column is None:
        sql = f"SELECT {target} AS {alias} FROM {source}"
        description = f"{label} over all {table.rows} rows of {table.name}"
    else:
        g = _quote(group_column.name)
        order = f"{alias} DESC" if aggregate in ("max", "sum", "count") else g
        sql = f"SELECT {g}, {target} AS {alias} FROM {source} GROUP BY {g} ORDER BY {order}"
        description = f"{label} per {group_column.name} in {table.name}"
    return Plan(sql, description)


def _choose_table(words: Sequence[str], tables: Sequence[Table]) -> Table:
    """The table the question names (by its name, else by most column names), else the newest."""

    def score(table: Table) -> tuple[int, int]:
        named = sum(1 for w in _words(table.name.replace("_", " ")) if w in words)
        columns = sum(1 for c in table.columns if _mentions(words, c))
        return named, columns

    return max(reversed(tables), key=score)


# ---------------------------------------------------------------------------------- validation


def validate(sql: str, tables: set[str]) -> str:
    """`sql` when it is one read-only SELECT over `tables` only; otherwise a TableError says why."""
    import duckdb

    text = sql.strip().rstrip(";").strip()
    if not text:
        raise TableError("The query is empty.")
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise TableError(f"The query is not valid SQL: {str(exc).splitlines()[0][:200]}") from exc
    if len(statements) != 1:
        raise TableError("Only one query can run at a time.")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise TableError("Only SELECT queries can run on your tables (nothing is changed).")
    if FORBIDDEN_FUNCTIONS.search(text):
        raise TableError("The query may read only this chat's tables, not files or settings.")
    referenced = _referenced_tables(text)
    unknown = referenced - tables
    if unknown:
        raise TableError(
            f"The query names tables this chat does not have ({', '.join(sorted(unknown))}); "
            f"the chat's tables are: {', '.join(sorted(tables))}."
        )
    return text


def _referenced_tables(sql: str) -> set[str]:
    """The tables a SELECT reads, from DuckDB's own parse tree (`json_serialize_sql`); a table function
    (`read_csv(...)`, `glob(...)`) anywhere is refused."""
    import json

    import duckdb

    con = duckdb.connect(":memory:")
    try:
        row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    except duckdb.Error as exc:
        raise TableError(f"The query is not valid SQL: {str(exc).splitlines()[0][:200]}") from exc
    finally:
        con.close()
    tree = json.loads(row[0]) if row and row[0] else {}
    if tree.get("error"):
        raise TableError(f"The query is not valid SQL: {str(tree.get('error_message', ''))[:200]}")
    names: set[str] = set()
    ctes: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "TABLE_FUNCTION":
                raise TableError("The query may read only this chat's tables, not files or settings.")
            if kind == "BASE_TABLE":
                if node.get("schema_name") or node.get("catalog_name"):
                    raise TableError("The query may read only this chat's tables, not other databases.")
                names.add(str(node.get("table_name", "")).lower())
            cte_map = node.get("cte_map")
            if isinstance(cte_map, dict):
                for entry in cte_map.get("map", []) or []:
                    if isinstance(entry, dict) and entry.get("key"):
                        ctes.add(str(entry["key"]).lower())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return names - ctes
