"""The data specialist: uploaded tables in DuckDB, queries validated and shown, tables per user and chat."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agents.specialists.base import FileRef, TurnContext
from agents.specialists.data.specialist import DataSpecialist
from agents.specialists.data.sql import plan, validate
from agents.specialists.data.tables import TableError, TableStore, check_table
from core.settings import LocalLLMSettings, Settings

REGIONS = ("North", "South", "East", "West")


def write_orders(path: Path, rows: int, seed: int = 1) -> dict[str, float]:
    """A CSV of orders; returns the true average order value per region."""
    rng = random.Random(seed)
    sums = dict.fromkeys(REGIONS, 0.0)
    counts = dict.fromkeys(REGIONS, 0)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("order_id,region,order_value,quantity,order_date,customer\n")
        for i in range(rows):
            region, value = rng.choice(REGIONS), rng.randint(100, 99_999) / 100
            sums[region] += value
            counts[region] += 1
            date = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            handle.write(f"{i},{region},{value},{rng.randint(1, 9)},{date},customer-{rng.randint(1, 99_999):05d}\n")
    return {r: sums[r] / counts[r] for r in REGIONS}


def settings_for(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]


def upload(tmp_path: Path, name: str, user: str = "alice", chat: str = "chat-1") -> Path:
    folder = tmp_path / "data" / "uploads" / user / chat
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def ref(path: Path, file_id: str = "file-1") -> FileRef:
    return FileRef(file_id, path.name, str(path), "text/csv", path.stat().st_size, "table")


def test_a_200k_row_csv_is_loaded_and_averaged_per_group_by_the_planner(tmp_path: Path) -> None:
    path = upload(tmp_path, "orders.csv")
    truth = write_orders(path, 200_000)
    settings = settings_for(tmp_path)
    check_table(ref(path), settings)
    store = TableStore(settings)
    tables = store.load("alice", "chat-1", [ref(path)])
    assert tables[0].rows == 200_000 and [c.name for c in tables[0].columns][:2] == ["order_id", "region"]
    planned = plan("What is the average order value per region?", tables)
    assert planned is not None
    assert planned.sql == ('SELECT "region", avg("order_value") AS "avg of order_value" FROM "orders" '
                           'GROUP BY "region" ORDER BY "region"')
    result = store.query(tables, planned.sql)
    assert {row[0]: row[1] for row in result.rows} == pytest.approx(truth)
    assert store.query(tables, plan("how many rows are there?", tables).sql).rows == ((200_000,),)  # type: ignore[union-attr]


async def test_the_specialist_answers_with_the_number_the_query_and_which_path_wrote_it(tmp_path: Path) -> None:
    path = upload(tmp_path, "orders.csv")
    truth = write_orders(path, 5_000, seed=4)
    settings = settings_for(tmp_path)
    specialist = DataSpecialist(TableStore(settings), None, settings)
    ctx = TurnContext(user_id="alice", thread_id="chat-1", files=(ref(path),))
    result = await specialist.run("What is the average order value per region?", ctx, {})
    assert not result.error, result.content
    for region, value in truth.items():
        assert f"| {region} | {value:.2f} |" in result.content
    assert "```sql\nSELECT \"region\", avg(\"order_value\")" in result.content
    assert "deterministic planner" in result.content
    # another user asking in a chat of the same id sees no table: tables are kept per user and chat
    other = await specialist.run("What is the average order value per region?",
                                 TurnContext(user_id="bob", thread_id="chat-1"), {})
    assert "no table in this chat" in other.content


def test_tables_are_per_user_and_chat_and_paths_outside_the_data_dir_are_refused(tmp_path: Path) -> None:
    path = upload(tmp_path, "orders.csv")
    write_orders(path, 100)
    settings = settings_for(tmp_path)
    store = TableStore(settings)
    store.load("alice", "chat-1", [ref(path)])
    assert store.folder("alice", "chat-1").is_dir()
    assert store.folder("bob", "chat-1") != store.folder("alice", "chat-1")
    assert not store.folder("bob", "chat-1").exists()
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    for sneaky in (tmp_path / "data" / "uploads" / ".." / ".." / "secret.csv", secret, Path("/etc/passwd")):
        forged = FileRef("x", "secret.csv", str(sneaky), "text/csv", 1, "table")
        with pytest.raises(TableError, match="not one of this chat's uploaded files"):
            store.load("bob", "chat-1", [forged])
    store.forget("chat-1")
    assert not store.folder("alice", "chat-1").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM orders WHERE region IN (SELECT * FROM glob('/*'))",
        "DROP TABLE orders",
        "COPY orders TO '/tmp/out.csv'",
        "SELECT 1; SELECT 2",
        "SELECT * FROM someone_elses_table",
        "SELECT * FROM other_db.main.orders",
        "SELECT getenv('HOME')",
        "ATTACH '/tmp/x.duckdb'",
    ],
)
def test_only_one_select_over_the_chats_own_tables_passes(sql: str) -> None:
    with pytest.raises(TableError):
        validate(sql, {"orders"})


def test_a_valid_select_with_a_cte_passes() -> None:
    sql = "WITH big AS (SELECT * FROM orders WHERE order_value > 10) SELECT region, count(*) FROM big GROUP BY 1"
    assert validate(sql + ";", {"orders"}) == sql


def test_the_sandbox_refuses_files_even_if_validation_were_bypassed(tmp_path: Path) -> None:
    path = upload(tmp_path, "orders.csv")
    write_orders(path, 50)
    store = TableStore(settings_for(tmp_path))
    tables = store.load("alice", "chat-1", [ref(path)])
    import agents.specialists.data.sql as sql_module

    original = sql_module.validate
    sql_module.validate = lambda sql, tables: sql  # type: ignore[assignment]
    try:
        with pytest.raises(TableError, match="query failed"):
            store.query(tables, "SELECT * FROM read_csv('/etc/hostname')")
    finally:
        sql_module.validate = original


def test_bad_tables_get_clear_messages(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n" + "1,2\n" * 3000 + "3,4,5\n6,7\n")
    with pytest.raises(TableError, match=r"rows of different lengths: line 3002 has 3 values where the header has 2"):
        check_table(ref(ragged), settings)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,city\nJosé,Málaga\n".encode("latin-1"))
    with pytest.raises(TableError, match="not UTF-8 text"):
        check_table(ref(latin), settings)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("a,b\n1,2\n".encode("utf-16"))
    with pytest.raises(TableError, match="UTF-16"):
        check_table(ref(utf16), settings)
    empty = tmp_path / "header-only.csv"
    empty.write_text("a,b\n")
    with pytest.raises(TableError, match="no rows"):
        check_table(ref(empty), settings)


def test_xlsx_formulas_are_read_as_saved_values_or_refused_when_never_calculated(tmp_path: Path) -> None:
    from openpyxl import Workbook

    settings = settings_for(tmp_path)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["item", "price", "double"])
    sheet.append(["lamp", 2, "=B2*2"])
    path = upload(tmp_path, "prices.xlsx")
    book.save(path)
    xlsx = FileRef("x1", "prices.xlsx", str(path), "application/octet-stream", 1, "table")
    with pytest.raises(TableError, match=r"formulas whose values were never calculated \(C2\)"):
        check_table(xlsx, settings)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Prices"
    for row in (["item", "price"], ["lamp", 2], ["kettle", 5.5]):
        sheet.append(row)
    book.save(path)
    check_table(xlsx, settings)
    store = TableStore(settings)
    tables = store.load("alice", "chat-1", [xlsx])
    assert tables[0].name == "prices" and tables[0].rows == 2
    assert store.query(tables, plan("average price", tables).sql).rows == ((3.75,),)  # type: ignore[union-attr]


@pytest.mark.llm
async def test_a_question_the_planner_cannot_take_goes_to_the_model_and_its_sql_is_validated(
    tmp_path: Path, local_llm: LocalLLMSettings
) -> None:
    """SmolLM2-135M writes the SQL (grammar-constrained JSON); whatever it writes, what runs was validated,
    and what cannot run is said plainly with examples of questions that work."""
    from core.models import ModelClient, chat_model

    path = upload(tmp_path, "orders.csv")
    write_orders(path, 200)
    settings = Settings(data_dir=tmp_path / "data", local_llm=local_llm, _env_file=None)  # type: ignore[call-arg]
    endpoint = settings.local_chat_endpoint()
    client = ModelClient("supervisor", endpoint, chat_model(endpoint))
    specialist = DataSpecialist(TableStore(settings), client, settings)
    ctx = TurnContext(user_id="alice", thread_id="chat-1", files=(ref(path),))
    question = "Show the orders of the North region"
    assert plan(question, TableStore(settings).load("alice", "chat-1", [ref(path)])) is None
    result = await specialist.run(question, ctx, {})
    if result.error:
        assert "“average order_value per region”" in result.content or "The query failed" in result.content
        assert "“how many rows”" in result.content or "```sql" in result.content
    else:
        assert "the chat model" in result.content and "```sql" in result.content and "| " in result.content
