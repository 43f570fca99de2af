"""daemon.units: the one place durations, sizes and rates are read, with their bounds."""

from __future__ import annotations

import pytest

from daemon import units
from daemon.units import (
    bounded_duration,
    bounded_int,
    check_rate,
    format_size,
    parse_rate,
    parse_schedule,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("4KiB", 4096), ("1MiB", 1024**2), ("10MB", 10**7), (" 2 gib ", 2 * 1024**3)],
)
def test_size_parses_bytes_and_binary_and_decimal_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "KiB", "-1", "1.5MiB", "1TiB", "9" * 31])
def test_size_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0"), (512, "512"), (65536, "64KiB"), (10**7, "10MB")]
)
def test_size_formats_in_largest_whole_unit(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


def test_rate_above_100000_per_second_is_refused() -> None:
    assert parse_rate("100000/s").per_second == 100_000

    with pytest.raises(ValueError, match="must be between 1/d and 100000/s, got 3000000000/s"):
        parse_rate("3000000000/s")


def test_rate_below_one_a_day_is_refused() -> None:
    assert parse_rate("1/d").per_second == pytest.approx(1 / 86400)

    with pytest.raises(ValueError, match="must be between 1/d"):
        parse_rate("0.5/d")


def test_absurd_rate_is_shown_short_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"got 1e\+300/s"):
        check_rate(1e300)


def test_schedule_entry_longer_than_30_days_is_refused() -> None:
    assert parse_schedule("30d") == (30 * 86400,)

    with pytest.raises(ValueError, match="item 2: must be at most 30d, got 31d"):
        parse_schedule("1s,31d")


def test_bounded_duration_names_the_bound() -> None:
    parse = bounded_duration(low=1.0, high=3600.0)
    assert parse("1h") == 3600

    with pytest.raises(ValueError, match="must be at most 1h"):
        parse("3601s")
    with pytest.raises(ValueError, match="must be at least 1s"):
        parse("999ms")


def test_bounded_duration_above_refuses_the_low_end_itself() -> None:
    with pytest.raises(ValueError, match="must be longer than 0s"):
        bounded_duration(high=60.0, above=True)("0s")


@pytest.mark.parametrize("text", ["0", "1000001", "99999999999", "9" * 400, "1.5", "x", ""])
def test_bounded_int_refuses_what_is_not_a_whole_number_in_range(text: str) -> None:
    with pytest.raises(ValueError, match="must be an integer between 1 and 1000000"):
        bounded_int(1, 1_000_000)(text)


def test_bounds_fit_postgres_int4_columns() -> None:
    int4 = 2**31 - 1
    assert int4 >= units.MAX_BURST
    assert int4 >= units.MAX_IN_FLIGHT
    assert int4 >= units.MAX_ENDPOINT_TIMEOUT_S * 1000  # endpoints.timeout_ms
    assert int4 >= units.MAX_RATE_PER_S * 1.0  # a default burst of one second's worth
