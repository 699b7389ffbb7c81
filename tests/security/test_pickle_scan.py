"""The opcode scan's shadow stack (weightmap_torch.pickle_reader.scan) against pickle itself:
every plain container structure Python pickles, in every protocol, passes and unpickles to an
equal object; nesting past the cap, memo indices past the cap and broken streams do not."""
from __future__ import annotations

import io
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightmap.errors import FormatError
from weightmap_torch import pickle_reader as pr

LEAVES = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=5) \
    | st.floats(allow_nan=False)
KEYS = st.text(max_size=4) | st.integers(-5, 5)
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                      | st.tuples(inner, inner) | st.dictionaries(KEYS, inner, max_size=4)
                      | st.frozensets(LEAVES, max_size=3), max_leaves=30)


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(value=VALUES, protocol=st.integers(2, 5), shared=st.booleans())
def test_plain_pickles_pass_the_scan(value, protocol, shared):
    obj = [value, value] if shared else value          # shared: memo GETs
    data = pickle.dumps(obj, protocol=protocol)
    assert pr.plain(pr.loads(data)) == obj


def nested(depth: int, *, tuples: bool) -> object:
    obj: object = ()
    for _ in range(depth):
        obj = (obj,) if tuples else [obj]
    return obj


@pytest.mark.parametrize("tuples", [True, False])
def test_nesting_up_to_the_cap_passes_and_beyond_is_refused(tuples):
    # the shadow counts every container level; a depth-d value is d + 1 deep with its leaf
    assert pr.loads(pickle.dumps(nested(190, tuples=tuples), 2)) == nested(190, tuples=tuples)
    with pytest.raises(FormatError, match="deeper than 200"):
        pr.loads(pickle.dumps(nested(250, tuples=tuples), 2))


def test_the_depth_cap_is_an_option():
    data = pickle.dumps(nested(20, tuples=True), 2)
    with pytest.raises(FormatError, match="deeper than 10"):
        pr.loads(data, limits=pr.Limits(max_depth=10))


@pytest.mark.parametrize("data,problem", [
    (b"\x80\x02.", "stack underflow"),                       # STOP on an empty stack
    (b"\x80\x02(t(.", "stack underflow"),                    # STOP right after a MARK
    (b"\x80\x02h\x05.", "never stored"),                     # GET of an empty memo slot
    (b"\x80\x02Na.", "stack underflow"),                     # APPEND without a list
    (b"\x80\x02K\x01K\x02a.", "not a container"),            # APPEND into an int
    (b"\x80\x02]r\x00\x00\x00\x10.", "memo index 268435456"),
])
def test_broken_streams_are_refused(data, problem):
    with pytest.raises(FormatError, match=problem):
        pr.scan(io.BytesIO(data), pr.Limits())
