"""Transformer execution order for name-sorted state dicts (GPT-2, Llama, BERT, ViT names), and
config.json facts; numpy only."""
import dataclasses
import json

import numpy as np

import weightmap
from weightmap.planning.transformer_order import (block_stacks, config_facts, execution_order,
                                                  natural_key)

E = 4
BLOCK = ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"]
LLAMA = ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
         "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
         "mlp.down_proj"]
BERT = ["attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
        "output.dense", "output.LayerNorm"]


def gpt2_names(blocks=12, prefix="transformer."):
    names = [f"{prefix}wte", f"{prefix}wpe"]
    names += [f"{prefix}h.{i}.{m}" for i in range(blocks) for m in BLOCK]
    return names + [f"{prefix}ln_f"]


def state(names, biases=True):
    out = {}
    for n in names:
        leaf = n.rpartition(".")[2].lower()
        if leaf.startswith(("ln", "norm")) or leaf.endswith("layernorm"):
            out[f"{n}.weight"] = np.ones(E, np.float32)
            if biases:
                out[f"{n}.bias"] = np.zeros(E, np.float32)
        elif n.endswith(("wte", "wpe", "embed_tokens", "embeddings")):
            out[f"{n}.weight"] = np.zeros((7, E), np.float32)
        else:
            out[f"{n}.weight"] = np.zeros((E, E), np.float32)
            if biases:
                out[f"{n}.bias"] = np.zeros(E, np.float32)
    return out


def names_of(graph):
    return [l.name for l in graph.layers]


def test_name_sorted_gpt2_is_put_in_execution_order():
    names = gpt2_names()
    graph = weightmap.read(state(sorted(names)))       # h.10 before h.2, wte last
    assert names_of(graph)[:3] == ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                                   "transformer.h.0.ln_1"]
    ordered = execution_order(graph)
    assert names_of(ordered) == names
    assert "layers put in transformer execution order" in ordered.meta["decisions"][0]
    assert ordered.meta["order_from"] == "names (transformer roles)"
    assert [p.name for p in ordered.params()] == [p.name for l in ordered.layers
                                                  for p in l.params]


def test_llama_and_bert_names_and_unknown_layers_at_the_end():
    llama = ["model.embed_tokens"] + [f"model.layers.{i}.{m}" for i in range(11)
                                      for m in LLAMA] + ["model.norm", "lm_head"]
    extra = {"zz_aux.weight": np.zeros((3, E), np.float32)}      # sorts last, as stored
    graph = weightmap.read({**state(sorted(llama), biases=False), **extra})
    assert block_stacks(graph) == ["model.layers"]
    assert names_of(execution_order(graph)) == llama + ["zz_aux"]
    bert = ["bert.embeddings.word_embeddings", "bert.embeddings.position_embeddings",
            "bert.embeddings.token_type_embeddings", "bert.embeddings.LayerNorm"]
    bert += [f"bert.encoder.layer.{i}.{m}" for i in range(3) for m in BERT]
    bert += ["bert.pooler.dense"]
    assert names_of(execution_order(weightmap.read(state(sorted(bert))))) == bert


def test_a_graph_not_sorted_by_name_keeps_its_order():
    """A post-LayerNorm model in its own order: ``norm1`` after the attention, as it runs."""
    names = [f"blocks.{i}.{m}" for i in range(2) for m in
             ("attn.qkv", "attn.proj", "norm1", "mlp.fc1", "mlp.fc2", "norm2")]
    graph = weightmap.read(state(names))
    assert execution_order(graph) is graph


def test_registration_order_with_norms_named_by_place_is_put_in_execution_order():
    """A Llama state dict as torch registers it (norms after the MLP): the norms' names say
    where they run, so the block is reordered; ``norm1`` / ``norm2`` above do not."""
    registered = [m for m in LLAMA if "layernorm" not in m] + \
        ["input_layernorm", "post_attention_layernorm"]
    names = ["model.embed_tokens"] + [f"model.layers.{i}.{m}" for i in range(3)
                                      for m in registered] + ["model.norm", "lm_head"]
    graph = weightmap.read(state(names, biases=False))
    ordered = execution_order(graph)
    assert names_of(ordered) == ["model.embed_tokens"] + [
        f"model.layers.{i}.{m}" for i in range(3) for m in LLAMA] + ["model.norm", "lm_head"]
    assert f"in {graph.order} order" in ordered.meta["decisions"][0]


def test_vit_tokens_on_the_root_come_before_the_blocks():
    vit = {"patch_embed.proj.weight": np.zeros((E, 3, 2, 2), np.float32),
           "cls_token": np.zeros((1, 1, E), np.float32),
           "pos_embed": np.zeros((1, 5, E), np.float32)}
    vit.update(state([f"blocks.{i}.{m}" for i in range(2) for m in
                      ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")]))
    vit.update(state(["norm", "head"]))
    graph = weightmap.read(dict(sorted(vit.items())))
    ordered = names_of(execution_order(graph))
    assert ordered[:4] == ["patch_embed.proj", "<root>", "blocks.0.norm1", "blocks.0.attn.qkv"]
    assert ordered[-2:] == ["norm", "head"]


def test_graphs_in_execution_order_or_without_transformer_blocks_are_left_alone():
    graph = weightmap.read(state(sorted(gpt2_names(blocks=2))))
    trusted = dataclasses.replace(graph, order="execution")
    assert execution_order(trusted) is trusted
    other = weightmap.read({"b.weight": np.zeros((2, 2), np.float32),
                            "a.weight": np.zeros((2, 2), np.float32)})
    assert execution_order(other) is other and block_stacks(other) == []
    resnet = weightmap.read(state(["layer1.0.conv1", "layer1.0.bn1", "layer1.1.conv1"]))
    assert execution_order(resnet) is resnet
    in_order = weightmap.read(state(gpt2_names(blocks=2)))
    assert execution_order(in_order) is in_order
    assert natural_key("h.10.x") > natural_key("h.2.x")


def test_layernorm_epsilon_from_config_json(tmp_path):
    from safetensors.numpy import save_file
    path = tmp_path / "model.safetensors"
    save_file(state(gpt2_names(blocks=1)), path)
    plain = weightmap.read(path)
    assert config_facts(plain) is plain                 # no config.json: nothing known
    (tmp_path / "config.json").write_text(json.dumps({"layer_norm_epsilon": 1e-6}))
    layer = config_facts(plain).layer("transformer.h.0.ln_2")
    assert layer.attrs["eps"] == 1e-6 and layer.attrs["eps_from"] == "config.json"
    (tmp_path / "config.json").write_text("{not json")
    assert config_facts(plain) is plain


def test_rms_norm_eps_types_the_weight_only_norms(tmp_path):
    from safetensors.numpy import save_file
    path = tmp_path / "model.safetensors"
    names = [f"model.layers.0.{m}" for m in LLAMA] + ["model.norm"]
    save_file(state(names, biases=False), path)
    plain = weightmap.read(path)
    assert plain.layer("model.norm").op == "layernorm"            # a state dict cannot tell
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama",
                                                      "rms_norm_eps": 1e-6}))
    typed = config_facts(plain)
    norm = typed.layer("model.layers.0.post_attention_layernorm")
    assert (norm.op, norm.attrs["eps"], norm.attrs["op_from"]) == \
        ("rmsnorm", 1e-6, "config.json (rms_norm_eps)")
    assert [p.role for p in norm.params] == ["gamma"]
    assert typed.layer("model.layers.0.self_attn.q_proj").op == "dense"
