"""The segment compiler: identifiers quoted per dialect, values only as literals the
dialect renders, every operator, and bad trees rejected with their path. The
backslash probe runs against real PostgreSQL and MariaDB, where it matters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from reflow.connectors._literals import UnsafeLiteral
from reflow.connectors._postgres import PostgresConfig
from reflow.connectors.sources.mysql import MysqlConfig, MysqlSource
from reflow.connectors.sources.postgres import PostgresSource
from reflow.services.segment_sql import OPERATORS, Compiler, SegmentError, segment_query
from tests.conftest import pg_credentials, require_service

NOW = dt.datetime(2024, 5, 10, 12, 0, tzinfo=dt.UTC)
COLUMNS = ["email", "score", "plan", "signed_up_at", "active", 'we"ird', "a`b"]


def _pg(database: str = "postgres") -> PostgresSource:
    return PostgresSource(PostgresConfig.model_validate(pg_credentials(database)))


def _mysql() -> MysqlSource:
    creds = {
        "hostname": "127.0.0.1",
        "port": 3306,
        "user": "root",
        "password": "",
        "database": "test",
    }
    return MysqlSource(MysqlConfig.model_validate(creds))


class NoBackslash:
    """A dialect stand-in for pure compilation: standard quoting and literals,
    failing loudly if asked about backslashes (no value here holds one)."""

    def quote_identifier(self, name: str) -> str:
        return _pg().quote_identifier(name)

    def sql_literal(self, value: Any) -> str:
        from reflow.connectors._literals import standard_literal

        def never() -> bool:
            raise AssertionError("no backslash expected")

        return standard_literal(value, backslash_escapes=never)


def where(molecules: Any, *, resolve: Any = None, dialect: Any = None) -> str:
    return Compiler(dialect or NoBackslash(), COLUMNS, resolve, now=NOW).where(molecules)


def atom(attribute: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {
        "attribute": attribute,
        "attribute_type": "property",
        "operator": operator,
        "value": value,
    }


def test_identifiers_are_quoted_per_dialect_by_the_connectors_own_rules() -> None:
    assert _pg().quote_identifier('we"ird') == '"we""ird"'
    assert _mysql().quote_identifier("a`b") == "`a``b`"
    assert where([atom('we"ird', "isnull")]) == '("we""ird" IS NULL)'
    assert where([atom("a`b", "isnull")], dialect=_mysql()) == "(`a``b` IS NULL)"


def test_values_are_literals_with_quotes_doubled_never_sql() -> None:
    sql = where([atom("email", "is", "o'brien'); DROP TABLE users; --")])
    assert sql == "(\"email\" = 'o''brien''); DROP TABLE users; --')"


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("is", "a", "\"email\" = 'a'"),
        ("equals", 3, '"email" = 3'),
        ("exactly", 2.5, '"email" = 2.5'),
        ("isnot", "a", "\"email\" <> 'a'"),
        ("notequals", 1, '"email" <> 1'),
        ("doesnotequal", True, '"email" <> TRUE'),
        ("lessthan", 5, '"email" < 5'),
        ("greaterthan", 5, '"email" > 5'),
        ("lessthanorequal", 5, '"email" <= 5'),
        ("greaterthanorequal", 5, '"email" >= 5'),
        ("before", "2024-01-01", "\"email\" < '2024-01-01'"),
        ("after", "2024-01-01", "\"email\" > '2024-01-01'"),
        ("contains", "50%_a!", "\"email\" LIKE '%50!%!_a!!%' ESCAPE '!'"),
        ("doesnotcontain", "x", "\"email\" NOT LIKE '%x%' ESCAPE '!'"),
        ("startswith", "x", "\"email\" LIKE 'x%' ESCAPE '!'"),
        ("endswith", "x", "\"email\" LIKE '%x' ESCAPE '!'"),
        ("isnull", None, '"email" IS NULL'),
        ("isnotnull", "ignored", '"email" IS NOT NULL'),
        ("isblank", None, '("email" IS NULL OR "email" = \'\')'),
        ("isnotblank", None, '("email" IS NOT NULL AND "email" <> \'\')'),
        ("istrue", None, '"email" = TRUE'),
        ("isfalse", None, '"email" = FALSE'),
        ("morethandays", 3, "\"email\" < '2024-05-07 12:00:00'"),
        ("lessthandays", "3", "\"email\" > '2024-05-07 12:00:00'"),
        (
            "exactlydays",
            1,
            "(\"email\" >= '2024-05-09 00:00:00' AND \"email\" < '2024-05-10 00:00:00')",
        ),
        ("on", "2024-02-29", "(\"email\" >= '2024-02-29' AND \"email\" < '2024-03-01')"),
        (
            "between",
            {"bound_one": "days_ago: 2", "bound_two": ""},
            "(\"email\" >= '2024-05-08 12:00:00' AND \"email\" <= '2024-05-10 12:00:00')",
        ),
        ("containsanyof", ["a", 1], "\"email\" IN ('a', 1)"),
        ("in", ["a"], "\"email\" IN ('a')"),
        ("notin", ["a", "b"], "\"email\" NOT IN ('a', 'b')"),
    ],
)
def test_every_operator(operator: str, value: Any, expected: str) -> None:
    assert where([atom("email", operator, value)]) == f"({expected})"


def test_the_parametrised_cases_cover_every_operator() -> None:
    params = [m for m in test_every_operator.pytestmark if m.name == "parametrize"][0].args[1]
    covered = {p[0] for p in params}
    assert covered == set(OPERATORS)


def test_nested_and_or_groups_and_related_segments() -> None:
    tree = [
        atom("plan", "is", "pro"),
        [atom("score", "greaterthan", 10), "OR", atom("email", "endswith", "@vip.com")],
        {"filter_segment_id": 7, "is_member": False},
    ]
    sql = where(tree, resolve=lambda seg_id: [atom("active", "istrue")])
    assert sql == (
        "(\"plan\" = 'pro' AND (\"score\" > 10 OR \"email\" LIKE '%@vip.com' ESCAPE '!')"
        ' AND (CASE WHEN ("active" = TRUE) THEN 1 ELSE 0 END = 0))'
    )
    assert where([]) == "1 = 1"
    assert (
        where([{"attribute_type": "sql", "attribute": "", "value": "score > 1;", "operator": ""}])
        == "((score > 1))"
    )


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"attribute": "email"}, "molecules must be an array"),
        ([atom("nope", "isnull")], r"molecules\[0\]\.attribute: .* no column 'nope'"),
        ([[atom("email", "frobnicate", 1)]], r"molecules\[0\]\[0\]\.operator 'frobnicate'"),
        ([atom("email", "is", {"x": 1})], r"molecules\[0\]\.value must be a string"),
        ([atom("email", "containsanyof", [])], r"molecules\[0\]\.value must be a non-empty"),
        ([atom("email", "containsanyof", ["a", [1]])], r"molecules\[0\]\.value\[1\] must be"),
        ([atom("email", "morethandays", -1)], r"molecules\[0\]\.value must be a whole number"),
        ([atom("email", "on", "yesterday")], r"molecules\[0\]\.value must be a date"),
        ([atom("email", "between", {"bound_one": "x"})], r"bound_one and bound_two"),
        (
            [atom("email", "between", {"bound_one": "soon", "bound_two": ""})],
            r"molecules\[0\]\.value\.bound_one must be a datetime",
        ),
        ([atom("email", "is", "nul\x00")], r"molecules\[0\]\.value: .*NUL"),
        ([atom("email", "is", float("nan"))], r"molecules\[0\]\.value: .*no SQL literal"),
        ([atom("email", "isnull"), "AND", atom("plan", "isnull"), "OR"], "mixes AND and OR"),
        ([atom("email", "isnull"), "XOR"], r"'XOR' is not an operation"),
        ([42], r"molecules\[0\] must be a molecule object"),
        ([{"relationship_id": 1, "molecules": []}], "relationship molecules are not supported"),
        ([{**atom("email", "isnull"), "attribute_type": "formula"}], "attribute_type must be"),
        ([{"attribute_type": "sql", "value": ""}], r"molecules\[0\]\.value must be a SQL"),
        ([{"filter_segment_id": "7"}], r"filter_segment_id must be an integer"),
        ([{"filter_segment_id": 7, "is_member": "yes"}], r"is_member must be a boolean"),
    ],
)
def test_bad_trees_name_their_path(tree: Any, message: str) -> None:
    with pytest.raises(SegmentError, match=message):
        where(tree, resolve=lambda _: [])


def test_a_segment_cannot_refer_to_itself_through_others() -> None:
    trees = {1: [{"filter_segment_id": 2}], 2: [{"filter_segment_id": 1}]}
    compiler = Compiler(NoBackslash(), COLUMNS, trees.__getitem__, now=NOW)
    compiler._stack.append(1)
    with pytest.raises(SegmentError, match="segment 1 refers to itself"):
        compiler.where(trees[1])


def test_segment_query_wraps_the_base_query() -> None:
    assert segment_query("SELECT 1 AS x;", "(1 = 1)") == (
        "SELECT * FROM (SELECT 1 AS x) AS _reflow_segment WHERE (1 = 1)"
    )


def test_unsupported_literal_types_are_refused() -> None:
    with pytest.raises(UnsafeLiteral):
        _pg().sql_literal(object())


@pytest.mark.parametrize("value", ["back\\slash", "\\'; SELECT 1; --", "end\\"])
def test_backslashes_round_trip_in_postgres_and_mariadb(value: str) -> None:
    """The literal reads back as exactly the value in both kinds of dialect."""
    require_service("PostgreSQL", 5432)
    require_service("MariaDB", 3306)
    for connector in (_pg(), _mysql()):
        literal = connector.sql_literal(value)
        batches = list(connector.read(f"SELECT {literal} AS v"))
        assert batches[0].column(0).to_pylist() == [value], (type(connector).__name__, literal)
    mysql = _mysql()
    mysql.sql_literal(value)
    assert mysql.__dict__["_reflow_backslash_escapes"] is True


def test_postgres_probe_finds_standard_strings() -> None:
    pg = _pg()
    pg.sql_literal("a\\b")
    assert pg.__dict__["_reflow_backslash_escapes"] is False
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        assert conn.execute("SHOW standard_conforming_strings").fetchall() == [("on",)]
