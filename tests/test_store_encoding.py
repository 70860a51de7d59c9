"""The store's frame encoding (pod_stats/store.py), without a kernel: every change list decodes to
exactly the values it was made from — types included (0 is not 0.0 in the JSON document) — and
errno counts likewise, whatever they do."""

import math

import orjson
from hypothesis import given
from hypothesis import strategies as st

from pod_stats.store import _apply, _apply_errnos, _changes, _errno_changes

values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=10**15).map(lambda n: round(n / 1e9, 9)),  # seconds, as sampled
    st.integers(min_value=0, max_value=10**9).map(lambda n: round(n / 1e3, 3)),  # rates
)


def _same(a: list, b: list) -> bool:
    return [type(x) for x in a] == [type(x) for x in b] and all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b)
    )


@given(st.lists(st.tuples(values, values), min_size=1, max_size=40))
def test_changes_decode_to_exactly_the_new_values(pairs):
    before = [old for old, _ in pairs]
    after = [new for _, new in pairs]
    assert _same(_apply(before, _changes(before, after)), after)


@given(st.lists(st.lists(values, min_size=5, max_size=5), min_size=2, max_size=30))
def test_a_chain_of_changes_decodes_every_step(steps):
    state = [None] * 5
    for values_now in steps:
        state = _apply(state, orjson.loads(orjson.dumps(_changes(state, values_now))))  # as stored
        assert _same(state, values_now)


def test_seconds_counters_are_written_as_short_steps():
    before, after = [1234.567891234, 0.5], [1234.571234567, 0.5]
    changes = _changes(before, after)
    assert changes == [0, [3343333]] and _apply(before, changes) == after


errnos = st.dictionaries(st.integers(min_value=1, max_value=133), st.integers(min_value=0, max_value=2**40))


@given(errnos, errnos)
def test_errno_changes_decode_to_exactly_the_new_counts(before, after):
    assert _apply_errnos(before, _errno_changes(before, after)) == after


def test_growing_errno_counts_are_written_as_increases():
    assert _errno_changes({2: 100, 13: 4}, {2: 107, 13: 4, 24: 1}) == [2, 7, 24, 1]
    assert _errno_changes({2: 100}, {13: 1}) == ["=", 13, 1]


def test_a_difference_no_json_number_holds_is_written_as_the_value():
    before, after = [-(2**63)], [2**64 - 1]
    changes = _changes(before, after)
    assert changes == [0, ["=", 2**64 - 1]] and _apply(before, changes) == after
