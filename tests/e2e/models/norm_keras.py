"""Conv-BN-ReLU blocks in Keras (the twin of norm_torch.py), BatchNorm epsilon 1.001e-5 as in
keras.applications. ``build(keras_module)`` builds it with Keras 3 (default) or tf_keras.

``affine_last=False`` makes b3 a BatchNorm without gamma and beta (scale=False, center=False)
and Keras' default epsilon 1e-3; otherwise b3 has both and epsilon 1e-3 all the same.
"""


def build(keras=None, affine_last=True):
    if keras is None:
        import keras
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=True, name="c1")(inp)
    x = L.BatchNormalization(epsilon=1.001e-5, name="b1")(x)
    x = L.ReLU(name="r1")(x)
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="c2")(x)
    x = L.BatchNormalization(epsilon=1.001e-5, name="b2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(16, 3, padding="same", name="c3")(x)
    x = L.BatchNormalization(epsilon=1e-3, scale=affine_last, center=affine_last, name="b3")(x)
    x = L.ReLU(name="r3")(x)
    x = L.Flatten(name="flatten")(x)
    out = L.Dense(5, name="fc")(x)
    return keras.Model(inp, out, name="convbn")


model = build
