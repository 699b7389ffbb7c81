"""A Keras 3 twin of tests/e2e/models/small_cnn_torch.py (channels-last, other names)."""
import keras

keras.utils.set_random_seed(3)


def build():
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(8, 3, padding="valid", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(4),
    ])


model = build
