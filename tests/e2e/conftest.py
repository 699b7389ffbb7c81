"""What every exact port of this folder also proves by ``verify``: the figures it measured."""
import math

import pytest

EXACT = 1e-5      # the suite's bar for an exact float32 port, relative to the largest output


def check_proven(report_or_result, *, exact=EXACT, outputs=True, skipped_ok=()):
    """The port's verification passed, with whole outputs compared and within ``exact``, and
    every paired layer within it too (a skipped layer must give a reason starting with one of
    ``skipped_ok``). Returns the result."""
    result = getattr(report_or_result, "verify", report_or_result)
    assert result is not None, "the port ran no verification"
    assert result.passed, result.summary()
    compared = [o for o in result.outputs if o.status != "skipped"]
    if outputs:
        assert compared and result.compared_up_to is None, result.summary()
    for o in compared:
        assert o.status == "ok" and o.rel is not None and o.rel <= exact, o
    assert result.layers, result.summary()
    for layer in result.layers:
        if layer.status == "skipped":
            assert layer.note.startswith(tuple(skipped_ok)) if skipped_ok else False, layer
        else:
            assert layer.status == "ok" and math.isfinite(layer.rel) and layer.rel <= exact, \
                layer
    return result


@pytest.fixture
def proven():
    return check_proven
