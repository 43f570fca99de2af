"""queries.sql: a `-- params:` line names each query's `$N`, checked when the file is parsed."""

from __future__ import annotations

import pytest

from daemon import sql
from daemon.recorder import outcome_columns
from daemon.replay import DeadLetterFilter
from daemon.sql import Query, parse_queries
from daemon.store import Store, Tx


def block(body: str, *, params: str | None = None, name: str = "q") -> str:
    header = f"-- name: {name}\n-- What it does.\n"
    if params is not None:
        header += f"-- params: {params}\n"
    return header + body + "\n"


def test_params_line_names_the_numbers_in_order() -> None:
    [q] = parse_queries(block("SELECT $2::int + $1::int;", params="first, second")).values()
    assert q == Query("q", q.text, ("first", "second"))
    assert q.text.startswith("-- What it does.") and q.text.endswith("$1::int;")


def test_query_without_parameters_needs_no_params_line() -> None:
    assert parse_queries(block("SELECT 1;"))["q"].params == ()


def test_body_using_a_number_beyond_the_names_is_refused() -> None:
    with pytest.raises(ValueError, match=r"query 'q' uses \$3 but names 2 parameters"):
        parse_queries(block("SELECT $1, $2, $3;", params="a, b"))


def test_named_number_the_body_does_not_use_is_refused() -> None:
    with pytest.raises(ValueError, match=r"query 'q' .*does not use: \$2 \(b\)"):
        parse_queries(block("SELECT $1, $3;", params="a, b, c"))


def test_duplicate_parameter_names_are_refused() -> None:
    with pytest.raises(ValueError, match="query 'q': duplicate parameter names a"):
        parse_queries(block("SELECT $1, $2, $3;", params="a, b, a"))


@pytest.mark.parametrize("bad", ["not-a-name", "2nd", "from", ""])
def test_parameter_name_must_be_an_identifier(bad: str) -> None:
    with pytest.raises(ValueError, match=f"query 'q': parameter name {bad!r}"):
        parse_queries(block("SELECT $1, $2;", params=f"a, {bad}"))


def test_numbers_without_a_params_line_are_refused() -> None:
    with pytest.raises(ValueError, match=r"query 'q' uses \$1 but has no '-- params:' line"):
        parse_queries(block("SELECT $1;"))


def test_params_line_without_numbers_is_refused() -> None:
    with pytest.raises(ValueError, match="query 'q' has a '-- params:' line but its SQL uses no"):
        parse_queries(block("SELECT 1;", params="a"))


def test_params_line_after_the_sql_starts_is_refused() -> None:
    text = "-- name: q\n-- What it does.\nSELECT $1\n-- params: a\n;\n"
    with pytest.raises(ValueError, match="query 'q': '-- params:' must come before the SQL"):
        parse_queries(text)


def test_two_params_lines_are_refused() -> None:
    text = "-- name: q\n-- params: a\n-- params: a\nSELECT $1;\n"
    with pytest.raises(ValueError, match="query 'q' has more than one '-- params:' line"):
        parse_queries(text)


def test_numbers_in_comments_and_literals_are_not_parameters() -> None:
    body = (
        "SELECT $1, '$2 isn''t one', $$ $3 $$, $fn$ $4 $fn$ -- nor $5 (it's a comment)\n"
        "-- a comment line mentioning $6[i]\n"
        "/* nor $7 */ FROM t;"
    )
    assert parse_queries(block(body, params="a"))["q"].params == ("a",)


def test_errors_name_the_query_among_several() -> None:
    text = block("SELECT $1;", params="a", name="fine") + block("SELECT $1;", name="broken")
    with pytest.raises(ValueError, match="query 'broken'"):
        parse_queries(text)


def test_the_real_queries_file_parses_and_names_every_number() -> None:
    queries = sql.queries()
    assert queries["claim"].params[8] == "lease_margin_s"
    assert queries["record_outcomes"].params[1] == "lease_tokens"
    assert queries["backlog"].params == ()
    assert all(isinstance(q, Query) and q.name == name for name, q in queries.items())


def test_args_come_in_dollar_order_whatever_the_keyword_order() -> None:
    q = Query("q", "SELECT $1, $2", ("first", "second"))
    assert q.args({"second": 2, "first": 1}) == [1, 2]
    assert Query("none", "SELECT 1").args({}) == []


def test_args_refuse_a_missing_name() -> None:
    q = Query("q", "SELECT $1, $2", ("first", "second"))
    with pytest.raises(TypeError, match=r"query 'q' takes \(first, second\): missing second"):
        q.args({"first": 1})


def test_args_refuse_an_unknown_name() -> None:
    q = Query("q", "SELECT $1", ("first",))
    with pytest.raises(TypeError, match=r"query 'q' takes \(first\): unknown frist"):
        q.args({"first": 1, "frist": 1})


def test_args_refuse_any_name_for_a_query_without_parameters() -> None:
    with pytest.raises(TypeError, match=r"query 'q' takes \(\): unknown x"):
        Query("q", "SELECT 1").args({"x": 1})


class NoPool:
    """A pool that must not be used: a wrong parameter name fails before any connection."""

    async def acquire(self) -> None:
        raise AssertionError("acquired a connection")


class RecordingConn:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    async def execute(self, statement: str, *args: object) -> str:
        self.calls.append((statement, args))
        return "UPDATE 0"


async def test_store_refuses_a_missing_keyword_before_taking_a_connection() -> None:
    store = Store(pool=NoPool(), dsn="postgresql://nowhere/db")
    with pytest.raises(TypeError, match=r"query 'release' .*: missing lease_tokens"):
        await store.execute("release", delivery_ids=[1])


async def test_store_refuses_an_unknown_keyword() -> None:
    store = Store(pool=NoPool(), dsn="postgresql://nowhere/db")
    with pytest.raises(TypeError, match=r"query 'rescue_expired' .*: unknown batch"):
        await store.fetch("rescue_expired", limit=10, batch=10)


async def test_tx_passes_keywords_to_the_driver_in_dollar_order() -> None:
    conn = RecordingConn()
    await Tx(conn).execute("release", lease_tokens=[7, 8], delivery_ids=[1, 2])
    [(statement, args)] = conn.calls
    assert statement == sql.queries()["release"].text
    assert args == ([1, 2], [7, 8])


def test_recorder_columns_and_dead_letter_filter_name_their_queries_parameters() -> None:
    outcome_params = set(outcome_columns([])) | {"instance", "succeeded"}
    assert outcome_params == set(sql.queries()["record_outcomes"].params)
    assert set(DeadLetterFilter().params()) == set(sql.queries()["dead_letters_stuck"].params)
