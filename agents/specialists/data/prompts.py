"""Prompts of the data specialist: SQL written by the chat model from a schema and a few sample rows."""

SQL_SYSTEM_PROMPT = """You write one DuckDB SQL query that answers the user's question about their tables.
Rules:
- Reply with JSON only: {{"sql": "<one SELECT statement>"}}.
- Use only the tables and columns listed below; quote column names with double quotes.
- One SELECT statement, no other statements, no comments.

Tables:
{schema}"""

SQL_USER_PROMPT = "Question: {question}"

NO_TABLES = (
    "There is no table in this chat yet. Attach a CSV, TSV or XLSX file to a message and ask about it, "
    "e.g. “average amount per region”."
)
NO_QUERY = (
    "I could not turn that into a query over your table{s} ({reason}). Ask for an aggregate by column name, "
    "for example: {examples}."
)
