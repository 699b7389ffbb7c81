"""Choosing the state dict inside a checkpoint, flattening, wrapper prefixes."""
from __future__ import annotations

import pickle
from collections import OrderedDict

import pytest

from weightmap.errors import FormatError, UsageError
from weightmap_torch import pickle_reader as pr
from weightmap_torch.containers import (check_expansion, find_weights, flatten, is_tensor_tree,
                                        wrapper_prefixes)
from weightmap_torch.pickle_reader import StorageRef, TensorRef

S = StorageRef("0", "float32", 64, "cpu")


def t(n=1):
    return TensorRef(S, 0, (n,), (1,), "float32")


def names(found):
    return [n for n, _ in found.tensors]


def test_bare_state_dict():
    found = find_weights(OrderedDict([("a.weight", t()), ("a.bias", t())]))
    assert found.container is None and names(found) == ["a.weight", "a.bias"]
    assert found.candidates == () and found.other_keys == ()


def test_lightning_layout():
    root = {"epoch": 3, "state_dict": {"model.l.weight": t()}, "hyper_parameters": {"lr": 1},
            "optimizer_states": [{"state": {0: {"exp_avg": t()}}}]}
    found = find_weights(root)
    assert found.container == "state_dict" and names(found) == ["model.l.weight"]
    assert found.candidates == ("optimizer_states",)
    assert found.other_keys == ("epoch", "hyper_parameters")
    assert found.prefixes == ("model.",)


def test_model_preferred_then_explicit_choice():
    root = {"model_ema": {"w": t()}, "model": {"w": t(2)}, "epoch": 1}
    assert find_weights(root).container == "model"
    ema = find_weights(root, "model_ema")
    assert ema.container == "model_ema" and ema.tensors[0][1].shape == (1,)
    assert ema.candidates == ("model",)
    with pytest.raises(UsageError, match="no container 'ema'.*model_ema, model"):
        find_weights(root, "ema")


def test_dotted_container_path():
    root = {"ema": {"module": {"w": t()}}, "step": 4}
    assert names(find_weights(root, "ema.module")) == ["w"]


def test_state_dict_key_holding_a_bare_tensor_is_a_tensor_name():
    found = find_weights({"model": t(), "other": t()})
    assert found.container is None and names(found) == ["model", "other"]


def test_nested_dicts_are_flattened_in_order():
    root = {"encoder": {"layer": {"weight": t(), "bias": t()}}, "decoder": {"weight": t()}}
    assert is_tensor_tree(root)
    found = find_weights(root)
    assert found.container is None
    assert names(found) == ["encoder.layer.weight", "encoder.layer.bias", "decoder.weight"]


def test_unique_holder_and_ambiguity():
    assert find_weights({"weights": {"w": t()}, "epoch": 1}).container == "weights"
    with pytest.raises(UsageError, match="several sets of weights: a, b"):
        find_weights({"a": {"w": t()}, "b": {"w": t()}, "epoch": 1})
    with pytest.raises(FormatError, match="holds no tensors"):
        find_weights({"epoch": 1})


def test_non_tensor_leaves_are_reported():
    found = find_weights({"w": t(), "_extra_state": "x", "cfg": {"depth": 2}})
    assert names(found) == ["w"] and found.skipped == ("_extra_state", "cfg.depth")


def test_bare_tensor_and_lists():
    with pytest.raises(FormatError, match="one bare tensor"):
        find_weights(t())
    assert names(find_weights([t(), {"x": t()}])) == ["0", "1.x"]


def test_cycles_from_a_pickle_are_refused():
    d = {"w": t()}
    d["self"] = d
    loaded = pr.loads(pickle.dumps({"x": [1, 2]}, protocol=2))
    loaded["x"].append(loaded)
    with pytest.raises(FormatError, match="cycle"):
        list(flatten(loaded))
    with pytest.raises(FormatError, match="cycle"):
        find_weights(d)


def test_deep_nesting_is_refused():
    root: dict = {"w": t()}
    for _ in range(100):
        root = {"n": root}
    with pytest.raises(FormatError, match="deeper than 64"):
        find_weights(root)


@pytest.mark.parametrize("keys,expected", [
    (["module.a", "module.b"], ("module.",)),
    (["model.module.a", "model.module.b"], ("model.", "module.")),
    (["_orig_mod.module.x"], ("_orig_mod.", "module.")),
    (["module.a", "b"], ()),
    (["modules.a"], ()),
    ([], ()),
])
def test_wrapper_prefixes(keys, expected):
    assert wrapper_prefixes(keys) == expected


def test_opaque_module_placeholders_are_walked_like_state_dicts():
    Conv = type("Opaque", (pr.Opaque,), {"global_name": "torch.nn.Conv2d"})
    child = Conv()
    child.state = {"_parameters": {"weight": t(), "bias": None}, "_buffers": {"b": t(),
                   "hidden": t()}, "_non_persistent_buffers_set": {"hidden"}, "_modules": {}}
    parent = Conv()
    parent.state = {"_parameters": {}, "_buffers": {}, "_modules": {"conv": child, "x": None}}
    assert names(find_weights(parent)) == ["conv.weight", "conv.b"]
    odd = Conv()
    odd.items = [t()]                      # a pickle may BUILD any attribute: not a mapping
    odd.state = "junk"
    with pytest.raises(FormatError, match="holds no tensors"):
        find_weights({"x": odd, "w": 3})


def test_shared_containers_are_walked_once_per_path_up_to_a_cap():
    shared = {"weight": t(), "bias": t()}
    found = find_weights({"a": shared, "b": shared})       # sharing is legal: both names
    assert names(found) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert check_expansion([shared, shared]) == 1 + 2 * 3
    chain: list = []
    for _ in range(60):                  # list i+1 holds list i twice: 2**60 paths
        chain = [chain, chain]
    with pytest.raises(FormatError, match="share objects .* more than 2000000 entries"):
        find_weights({"w": t(), "junk": chain})
    with pytest.raises(FormatError, match="more than 10 entries"):
        check_expansion([shared] * 4, limit=10)


def test_expansion_count_ignores_cycles_which_flatten_refuses():
    d = {"w": t()}
    d["self"] = d
    assert check_expansion(d) == 2
    with pytest.raises(FormatError, match="cycle"):
        find_weights(d)
