"""Op kinds, attributes and roles of live torch modules."""
from __future__ import annotations

import pytest

from weightmap_torch import live_ops

torch = pytest.importorskip("torch")
nn = torch.nn
TABLE = live_ops.handlers(nn)


def describe(module):
    return live_ops.describe(module, TABLE)


def test_dense():
    assert describe(nn.Linear(3, 2, bias=False)) == (
        "dense", {"in_features": 3, "out_features": 2, "use_bias": False})
    # subclasses are covered (MultiheadAttention's out_proj)
    assert describe(nn.MultiheadAttention(4, 2).out_proj)[0] == "dense"


def test_convolutions():
    op, attrs = describe(nn.Conv2d(3, 8, (3, 5), stride=2, padding="valid", dilation=1))
    assert op == "conv2d"
    assert attrs == {"in_channels": 3, "out_channels": 8, "kernel_size": (3, 5),
                     "stride": (2, 2), "padding": "valid", "dilation": (1, 1), "groups": 1,
                     "padding_mode": "zeros", "use_bias": True}
    assert describe(nn.Conv1d(2, 4, 3))[0] == "conv1d"
    assert describe(nn.Conv3d(2, 4, 3))[0] == "conv3d"
    op, attrs = describe(nn.Conv2d(4, 8, 3, groups=4))
    assert op == "depthwise_conv2d" and attrs["depth_multiplier"] == 2
    assert describe(nn.Conv2d(4, 8, 3, groups=2))[0] == "conv2d"     # grouped, not depthwise
    assert describe(nn.Conv1d(1, 1, 3, groups=1))[0] == "conv1d"     # one channel: plain
    op, attrs = describe(nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1))
    assert op == "conv_transpose2d" and attrs["output_padding"] == (1, 1)
    assert describe(nn.ConvTranspose1d(4, 2, 3))[0] == "conv_transpose1d"


def test_normalisation():
    assert describe(nn.BatchNorm1d(5, eps=1e-3, momentum=0.2)) == (
        "batchnorm", {"num_features": 5, "eps": 1e-3, "momentum": 0.2, "affine": True,
                      "track_running_stats": True})
    assert describe(nn.SyncBatchNorm(3))[0] == "batchnorm"
    assert describe(nn.InstanceNorm2d(3, affine=True))[0] == "instancenorm"
    assert describe(nn.LayerNorm([4, 5], eps=1e-12, bias=False)) == (
        "layernorm", {"normalized_shape": (4, 5), "eps": 1e-12, "elementwise_affine": True,
                      "use_bias": False})
    assert describe(nn.GroupNorm(2, 4)) == (
        "groupnorm", {"num_groups": 2, "num_channels": 4, "eps": 1e-5, "affine": True})
    assert describe(nn.RMSNorm(6))[0] == "rmsnorm"


def test_embedding_prelu_attention():
    assert describe(nn.Embedding(10, 3, padding_idx=0)) == (
        "embedding", {"num_embeddings": 10, "embedding_dim": 3, "padding_idx": 0,
                      "max_norm": None})
    assert describe(nn.PReLU(4)) == ("prelu", {"num_parameters": 4})
    op, attrs = describe(nn.MultiheadAttention(8, 2, batch_first=True, kdim=4, vdim=4))
    assert op == "attention"
    assert attrs == {"embed_dim": 8, "num_heads": 2, "kdim": 4, "vdim": 4, "batch_first": True,
                     "dropout": 0.0, "add_bias_kv": False, "add_zero_attn": False,
                     "use_bias": True}


def test_recurrent():
    op, attrs = describe(nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                                 proj_size=2))
    assert op == "lstm"
    assert attrs == {"input_size": 3, "hidden_size": 4, "units": 4, "use_bias": True,
                     "num_layers": 2, "bidirectional": True, "batch_first": True,
                     "dropout": 0.0, "proj_size": 2, "gate_order": "ifgo"}
    assert describe(nn.GRU(3, 4))[1]["gate_order"] == "rzn"
    op, attrs = describe(nn.RNN(3, 4, nonlinearity="relu"))
    assert op == "simple_rnn" and attrs["nonlinearity"] == "relu" and "gate_order" not in attrs
    op, attrs = describe(nn.GRUCell(3, 4))
    assert op == "gru" and attrs["cell"] is True and attrs["num_layers"] == 1


def test_unknown_types_are_opaque():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(2, 3))
    assert describe(Custom()) == ("opaque", {})
    assert describe(nn.Bilinear(2, 2, 2)) == ("opaque", {})


@pytest.mark.parametrize("op,key,role", [
    ("dense", "weight", "kernel"), ("dense", "bias", "bias"), ("conv2d", "weight", "kernel"),
    ("batchnorm", "weight", "gamma"), ("batchnorm", "running_var", "moving_var"),
    ("batchnorm", "num_batches_tracked", "num_batches_tracked"),
    ("layernorm", "bias", "beta"), ("instancenorm", "running_mean", "moving_mean"),
    ("embedding", "weight", "embeddings"), ("prelu", "weight", "alpha"),
    ("attention", "in_proj_weight", "in_proj_kernel"), ("attention", "k_proj_weight",
                                                        "key_kernel"),
    ("attention", "bias_k", "other"),
    ("lstm", "weight_ih_l0", "kernel"), ("lstm", "weight_hh_l1_reverse", "recurrent_kernel"),
    ("gru", "bias_ih_l0", "bias"), ("gru", "bias_hh", "recurrent_bias"),
    ("lstm", "weight_hr_l0", "other"), ("opaque", "weight", "kernel"),
    ("opaque", "scale", "other"),
])
def test_roles(op, key, role):
    assert live_ops.role_for(op, key) == role


def test_custom_rms_norm_classes_are_known_by_name():
    class LlamaRMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(6))
            self.variance_epsilon = 1e-6

    class T5LayerNorm(LlamaRMSNorm):
        pass

    class ScaleNorm(LlamaRMSNorm):          # not a known name: opaque
        pass

    assert describe(LlamaRMSNorm()) == ("rmsnorm", {"normalized_shape": (6,), "eps": 1e-6,
                                                    "custom_class": "LlamaRMSNorm"})
    assert describe(T5LayerNorm())[0] == "rmsnorm"
    assert describe(ScaleNorm()) == ("opaque", {})
    odd = LlamaRMSNorm()
    odd.bias = nn.Parameter(torch.zeros(6))          # more than a weight: not recognised
    assert describe(odd) == ("opaque", {})
    assert live_ops.role_for("rmsnorm", "weight") == "gamma"
