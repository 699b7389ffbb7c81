"""GPT-2 execution order for name-sorted state dicts, and config.json epsilon; numpy only."""
import dataclasses
import json

import numpy as np

import weightmap
from weightmap.conversions.transformer_order import (config_eps, execution_order, gpt2_prefix,
                                                     gpt2_rank)

E = 4
BLOCK = ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"]


def gpt2_names(blocks=12, prefix="transformer."):
    names = [f"{prefix}wte", f"{prefix}wpe"]
    names += [f"{prefix}h.{i}.{m}" for i in range(blocks) for m in BLOCK]
    return names + [f"{prefix}ln_f"]


def state(names):
    out = {}
    for n in names:
        if n.rpartition(".")[2].startswith("ln"):
            out[f"{n}.weight"], out[f"{n}.bias"] = np.ones(E, np.float32), np.zeros(E, np.float32)
        elif n.endswith(("wte", "wpe")):
            out[f"{n}.weight"] = np.zeros((7, E), np.float32)
        else:
            out[f"{n}.weight"], out[f"{n}.bias"] = np.zeros((E, E), np.float32), \
                np.zeros(E, np.float32)
    return out


def test_name_sorted_gpt2_is_put_in_execution_order():
    names = gpt2_names()
    graph = weightmap.read(state(sorted(names)))       # h.10 before h.2, wte last
    assert [l.name for l in graph.layers][:3] == ["transformer.h.0.attn.c_attn",
                                                  "transformer.h.0.attn.c_proj",
                                                  "transformer.h.0.ln_1"]
    ordered = execution_order(graph)
    assert [l.name for l in ordered.layers] == names
    assert "layers put in GPT-2 execution order" in ordered.meta["decisions"][0]
    assert [p.name for p in ordered.params()] == [p.name for l in ordered.layers
                                                  for p in l.params]


def test_without_prefix_and_with_unknown_layers_at_the_end():
    names = gpt2_names(blocks=2, prefix="") + ["lm_head"]
    extra = {"score.weight": np.zeros((3, E), np.float32)}
    graph = weightmap.read({**extra, **state(sorted(names))})
    assert gpt2_prefix(graph) == ""
    ordered = [l.name for l in execution_order(graph).layers]
    assert ordered == names + ["score"]
    assert gpt2_rank("h.1.attn.c_proj", "", 0) < gpt2_rank("h.1.ln_2", "", 0) < \
        gpt2_rank("h.10.ln_1", "", 0)


def test_graphs_in_execution_order_or_not_gpt2_are_left_alone():
    graph = weightmap.read(state(sorted(gpt2_names(blocks=2))))
    trusted = dataclasses.replace(graph, order="execution")
    assert execution_order(trusted) is trusted
    other = weightmap.read({"b.weight": np.zeros((2, 2), np.float32),
                            "a.weight": np.zeros((2, 2), np.float32)})
    assert execution_order(other) is other
    assert gpt2_prefix(other) is None
    in_order = weightmap.read(state(gpt2_names(blocks=2)))
    assert execution_order(in_order) is in_order


def test_layernorm_epsilon_from_config_json(tmp_path):
    from safetensors.numpy import save_file
    path = tmp_path / "model.safetensors"
    save_file(state(gpt2_names(blocks=1)), path)
    plain = weightmap.read(path)
    assert config_eps(plain) is plain                   # no config.json: nothing known
    (tmp_path / "config.json").write_text(json.dumps({"layer_norm_epsilon": 1e-6}))
    layer = config_eps(plain).layer("transformer.h.0.ln_2")
    assert layer.attrs["eps"] == 1e-6 and layer.attrs["eps_from"] == "config.json"
    (tmp_path / "config.json").write_text("{not json")
    assert config_eps(plain) is plain
