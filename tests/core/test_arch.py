"""The transformer name vocabulary (weightmap/arch.py)."""
import pytest

from weightmap import arch


@pytest.mark.parametrize("name, role", [
    ("model.layers.3.self_attn.q_proj", "q"), ("blocks.0.attn.wk", "k"),
    ("bert.encoder.layer.0.attention.self.value", "v"), ("h.0.attn.c_attn", "qkv"),
    ("h.0.attn.c_proj", "o"), ("h.0.mlp.c_proj", "down"), ("blocks.1.attn.proj", "o"),
    ("bert.encoder.layer.0.attention.output.dense", "o"),
    ("bert.encoder.layer.0.output.dense", "down"),
    ("bert.encoder.layer.0.intermediate.dense", "up"),
    ("bert.encoder.layer.0.attention.output.LayerNorm", "norm_post_attn"),
    ("bert.encoder.layer.0.output.LayerNorm", "norm_out"),
    ("layers.2.feed_forward.w1", "gate"), ("layers.2.feed_forward.w3", "up"),
    ("layers.2.mlp.gate_up_proj", "gate_up"), ("h.0.crossattention.c_proj", "cross_o"),
    ("model.layers.0.post_attention_layernorm", "norm_mid"),
    ("model.embed_tokens", "embed_tokens"), ("bert.embeddings.LayerNorm", "embed_norm"),
    ("model.norm", "final_norm"), ("lm_head", "head"), ("patch_embed.proj", "embed_patch"),
    ("attn.wv", "v"), ("layer1.0.conv1", None), ("features.3", None),
    ("blocks.0.attn.mystery", None)])
def test_roles_from_the_trailing_name_parts(name, role):
    assert arch.role_of(name) == role


def test_blocks_split_at_the_first_index_and_fused_kinds():
    assert arch.split_block("model.layers.3.block_sparse_moe.experts.5.w1") == \
        ("model.layers", 3, "block_sparse_moe.experts.5.w1")
    assert arch.split_block("lm_head") is None
    assert [arch.fused_kind(r) for r in ("qkv", "cross_qkv", "gate_up", "q", None)] == \
        ["qkv", "qkv", "gate_up", None, None]
    assert arch.FUSED["gate_up"] == ("gate", "up")
    order = arch.BLOCK_ROLES
    assert order.index("norm_attn") < order.index("q") < order.index("o") < \
        order.index("norm_mid") < order.index("gate") < order.index("down")


@pytest.mark.parametrize("rest, says", [
    ("self_attn.q_proj", True), ("mlp.down_proj", True), ("input_layernorm", True),
    ("post_attention_layernorm", True), ("attention.output.LayerNorm", True),
    ("output.LayerNorm", True), ("norm1", False), ("ln_1", False), ("ln_2", False),
    ("mystery", False)])
def test_which_block_parts_say_where_they_run(rest, says):
    assert arch.says_its_place(rest) is says
