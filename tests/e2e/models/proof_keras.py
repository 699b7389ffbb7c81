"""The Keras twin of proof_torch.py (channels last, BatchNorm epsilon 1e-3, Keras names)."""


def build(keras, head_activation=None):
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c3")(x)
    x = L.BatchNormalization(epsilon=1e-3, name="bn")(x)
    x = L.ReLU(name="bn_relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inp, L.Dense(5, activation=head_activation, name="fc")(x), name="proof")
