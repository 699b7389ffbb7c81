import numpy as np
import pytest

from weightmap.planning.conversions import LayerPair
from weightmap.graph import ArrayData, Layer, Param, ParamGraph
from weightmap import registry


def make_layer(framework, name, op, params, attrs=None, rng=None):
    """params: list of (suffix, role, shape); returns a Layer with random data."""
    rng = rng or np.random.default_rng(0)
    sep = "/" if framework == "keras" else "."
    ps = []
    for suffix, role, shape in params:
        arr = rng.standard_normal(shape).astype(np.float32)
        ps.append(Param(f"{name}{sep}{suffix}", role, tuple(shape), "float32",
                        registry.convention(framework).axes(op, role, len(shape)), ArrayData(arr)))
    return Layer(name, op, tuple(ps), attrs or {})


def make_pair(src_layers, tgt_layers, s_fw, t_fw, src_name, tgt_name, pairs):
    sg = ParamGraph("arrays", s_fw, "src", tuple(src_layers))
    tg = ParamGraph("arrays", t_fw, "tgt", tuple(tgt_layers))
    return LayerPair(sg.layer(src_name), tg.layer(tgt_name), sg, tg, tuple(pairs))


@pytest.fixture
def pair_factory():
    return make_pair


@pytest.fixture
def layer_factory():
    return make_layer
