"""Shape rules checked against Keras' own ``compute_output_shape`` for the same configs."""
from __future__ import annotations

import pytest

from weightmap_keras.shapes import conv_length, deconv_length, output_shape

CASES = [
    ("Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same", "strides": 2}, (9, 7, 3)),
    ("Conv2D", {"filters": 4, "kernel_size": (3, 5), "padding": "valid", "strides": (2, 1),
                "dilation_rate": 1}, (11, 12, 3)),
    ("Conv2D", {"filters": 2, "kernel_size": 3, "dilation_rate": 2}, (10, 10, 3)),
    ("Conv2D", {"filters": 2, "kernel_size": 3, "data_format": "channels_first"}, (3, 10, 9)),
    ("Conv1D", {"filters": 2, "kernel_size": 4, "padding": "causal", "dilation_rate": 2},
     (13, 3)),
    ("Conv3D", {"filters": 2, "kernel_size": 2, "strides": 2}, (5, 6, 7, 1)),
    ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 3, "strides": 2}, (9, 9, 2)),
    ("SeparableConv2D", {"filters": 5, "kernel_size": 3, "padding": "same"}, (7, 8, 2)),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2}, (5, 4, 2)),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 4, "strides": 2, "padding": "same"},
     (5, 4, 2)),
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2, "output_padding": 1,
                         "padding": "same"}, (5, 4, 2)),
    ("Conv1DTranspose", {"filters": 3, "kernel_size": 5, "strides": 3}, (7, 2)),
    ("MaxPooling2D", {"pool_size": 3, "strides": 2}, (9, 8, 4)),
    ("MaxPooling2D", {"pool_size": 2, "padding": "same"}, (9, 7, 4)),
    ("AveragePooling1D", {"pool_size": 3, "strides": 1}, (10, 2)),
    ("GlobalAveragePooling2D", {}, (5, 5, 6)),
    ("GlobalMaxPooling2D", {"keepdims": True}, (5, 5, 6)),
    ("ZeroPadding2D", {"padding": ((1, 2), (3, 4))}, (5, 5, 2)),
    ("ZeroPadding1D", {"padding": 2}, (5, 2)),
    ("Cropping2D", {"cropping": ((1, 0), (2, 1))}, (8, 8, 2)),
    ("UpSampling2D", {"size": (2, 3)}, (4, 5, 2)),
    ("Flatten", {}, (3, 4, 5)),
    ("Reshape", {"target_shape": (-1, 6)}, (4, 3, 2)),
    ("Permute", {"dims": (2, 1)}, (4, 3)),
    ("Dense", {"units": 7}, (4, 3)),
    ("BatchNormalization", {}, (4, 4, 3)),
    ("Dropout", {"rate": 0.5}, (4, 3)),
    ("Embedding", {"input_dim": 10, "output_dim": 3}, (6,)),
    ("LSTM", {"units": 5, "return_sequences": True}, (6, 3)),
    ("GRU", {"units": 5}, (6, 3)),
]


@pytest.mark.parametrize("cls, cfg, shape", CASES)
def test_output_shape_equals_keras(keras3, cls, cfg, shape):
    layer = getattr(keras3.layers, cls)(**cfg)
    expected = tuple(layer.compute_output_shape((None,) + shape))[1:]
    assert output_shape(cls, cfg, [shape]) == expected


def test_concatenate_and_merges(keras3):
    cat = keras3.layers.Concatenate(axis=-1)
    shapes = [(4, 3), (4, 5)]
    expected = tuple(cat.compute_output_shape([(None,) + s for s in shapes]))[1:]
    assert output_shape("Concatenate", {"axis": -1}, shapes) == expected == (4, 8)
    assert output_shape("Concatenate", {"axis": 1}, shapes[:1] * 2) == (8, 3)
    assert output_shape("Add", {}, [(4, 3), (4, 3)]) == (4, 3)


def test_unknowns_propagate():
    assert output_shape("Lambda", {}, [(4, 3)]) is None
    assert output_shape("Conv2D", {"filters": 2, "kernel_size": 3}, [None]) is None
    assert output_shape("Conv2D", {"filters": 2, "kernel_size": 3}, [(None, 5, 3)]) == \
        (None, 3, 2)
    assert output_shape("Flatten", {}, [(None, 3)]) == (None,)
    assert output_shape("Conv2D", {"kernel_size": 3}, [(5, 5, 3)]) is None   # no filters
    assert conv_length(None, 3, "same", 1) is None
    assert deconv_length(None, 3, "same", 2, 1, None) is None
