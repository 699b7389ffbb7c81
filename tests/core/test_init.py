import numpy as np

import weightmap
import weightmap.api  # noqa: F401  (importing the pipeline must not shadow the API functions)


def test_public_functions_stay_callable_after_the_pipeline_is_imported():
    src = {"a.weight": np.ones((3, 2), np.float32)}
    tgt = {"b.weight": np.zeros((3, 2), np.float32)}
    for _ in range(2):
        p = weightmap.plan(src, tgt)
        assert [t.status for t in p.tensors] == ["transferred"]
    assert callable(weightmap.port) and callable(weightmap.load_partial)


def test_the_pipeline_functions_are_the_api_s_own_and_listed():
    import inspect

    import weightmap.api
    assert weightmap.port is weightmap.api.port and weightmap.plan is weightmap.api.plan
    assert "min_coverage" in inspect.signature(weightmap.port).parameters
    assert {"port", "plan", "load_partial", "read"} <= set(dir(weightmap))
