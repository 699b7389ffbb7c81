"""A small DenseNet in Keras, written as keras.applications.densenet writes DenseNet121: conv
blocks that concatenate their growth onto their input, transitions, then BatchNorm, ReLU,
global average pooling and a dense head. The last conv has 8 channels, the head reads 32
features: only the graph can say they are pooled, not a flattened 2x2 map."""
import keras

GROWTH, EPS = 8, 1.001e-5


def conv_block(x, name):
    L = keras.layers
    x1 = L.BatchNormalization(axis=3, epsilon=EPS, name=name + "_0_bn")(x)
    x1 = L.Activation("relu", name=name + "_0_relu")(x1)
    x1 = L.Conv2D(4 * GROWTH, 1, use_bias=False, name=name + "_1_conv")(x1)
    x1 = L.BatchNormalization(axis=3, epsilon=EPS, name=name + "_1_bn")(x1)
    x1 = L.Activation("relu", name=name + "_1_relu")(x1)
    x1 = L.Conv2D(GROWTH, 3, padding="same", use_bias=False, name=name + "_2_conv")(x1)
    return L.Concatenate(axis=3, name=name + "_concat")([x, x1])


def transition_block(x, name):
    L = keras.layers
    x = L.BatchNormalization(axis=3, epsilon=EPS, name=name + "_bn")(x)
    x = L.Activation("relu", name=name + "_relu")(x)
    x = L.Conv2D(x.shape[-1] // 2, 1, use_bias=False, name=name + "_conv")(x)
    return L.AveragePooling2D(2, strides=2, name=name + "_pool")(x)


def build(classes=5):
    L = keras.layers
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv1_conv")(inp)
    x = L.BatchNormalization(axis=3, epsilon=EPS, name="conv1_bn")(x)
    x = L.Activation("relu", name="conv1_relu")(x)
    for i in range(2):
        x = conv_block(x, f"conv2_block{i + 1}")
    x = transition_block(x, "pool2")
    for i in range(2):
        x = conv_block(x, f"conv3_block{i + 1}")
    x = L.BatchNormalization(axis=3, epsilon=EPS, name="bn")(x)
    x = L.Activation("relu", name="relu")(x)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inp, L.Dense(classes, name="predictions")(x), name="densenet")


def model():
    keras.utils.set_random_seed(7)
    return build()
