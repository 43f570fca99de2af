"""Which PostgreSQL errors mean "retry later" (work is kept) and which mean "refused"."""

from __future__ import annotations

import pytest

from daemon.store import _transient


@pytest.mark.parametrize(
    "sqlstate",
    ["08006", "08001", "25006", "57014", "57P01", "57P03", "40001", "40P01", "53300", "55P03"],
)
def test_outages_failovers_and_timeouts_are_transient(sqlstate: str) -> None:
    assert _transient(sqlstate)


@pytest.mark.parametrize("sqlstate", ["23505", "23503", "22P02", "42P01", "42501", None, ""])
def test_constraint_syntax_and_permission_errors_are_not(sqlstate: str | None) -> None:
    assert not _transient(sqlstate)
