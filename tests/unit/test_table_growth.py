"""When the daemon plans its statements again: a table that at least doubled since the last
planning, counted from a floor so that a few pages more of a tiny table do not count."""

from daemon.plans import TableGrowth


def test_the_first_sizes_seen_are_only_the_mark() -> None:
    growth = TableGrowth(growth=2.0, floor_pages=8)
    assert growth.grown({"deliveries": 1000, "outbox": 5}) == []


def test_a_table_that_doubled_is_named_and_every_mark_moves() -> None:
    growth = TableGrowth(growth=2.0, floor_pages=8)
    growth.grown({"deliveries": 100, "outbox": 100})
    assert growth.grown({"deliveries": 199, "outbox": 150}) == []
    assert growth.grown({"deliveries": 200, "outbox": 150}) == ["deliveries"]
    # the marks are now 200 and 150: outbox must reach 300
    assert growth.grown({"deliveries": 210, "outbox": 299}) == []
    assert growth.grown({"deliveries": 210, "outbox": 300}) == ["outbox"]


def test_growth_from_an_empty_table_counts_from_the_floor() -> None:
    growth = TableGrowth(growth=2.0, floor_pages=8)
    growth.grown({"deliveries": 0})
    assert growth.grown({"deliveries": 15}) == []
    assert growth.grown({"deliveries": 16}) == ["deliveries"]


def test_a_table_that_shrank_grows_again_from_its_smaller_size() -> None:
    growth = TableGrowth(growth=2.0, floor_pages=8)
    growth.grown({"deliveries": 1000})
    assert growth.grown({"deliveries": 100}) == []  # truncated by a VACUUM
    assert growth.grown({"deliveries": 200}) == ["deliveries"]


def test_a_table_seen_for_the_first_time_only_sets_its_mark() -> None:
    growth = TableGrowth(growth=2.0, floor_pages=8)
    growth.grown({"deliveries": 10})
    assert growth.grown({"deliveries": 10, "new_table": 5000}) == []
    assert growth.grown({"deliveries": 10, "new_table": 10000}) == ["new_table"]
