"""A small ResNet v1 in Keras, written as keras.applications.resnet writes ResNet50: a padded
7x7 stem, bottleneck blocks whose convs have biases (before BatchNorm, epsilon 1.001e-5), the
stride on the first 1x1 conv, and a shortcut conv created *before* the main branch (so Keras
lists the layers conv1, conv2, conv0, conv3, bn0, bn3), global average pooling, a dense head."""
import keras

EPS = 1.001e-5


def block1(x, filters, stride=1, conv_shortcut=True, name=None):
    L = keras.layers
    if conv_shortcut:
        shortcut = L.Conv2D(4 * filters, 1, strides=stride, name=name + "_0_conv")(x)
        shortcut = L.BatchNormalization(axis=3, epsilon=EPS, name=name + "_0_bn")(shortcut)
    else:
        shortcut = x
    x = L.Conv2D(filters, 1, strides=stride, name=name + "_1_conv")(x)
    x = L.BatchNormalization(axis=3, epsilon=EPS, name=name + "_1_bn")(x)
    x = L.Activation("relu", name=name + "_1_relu")(x)
    x = L.Conv2D(filters, 3, padding="same", name=name + "_2_conv")(x)
    x = L.BatchNormalization(axis=3, epsilon=EPS, name=name + "_2_bn")(x)
    x = L.Activation("relu", name=name + "_2_relu")(x)
    x = L.Conv2D(4 * filters, 1, name=name + "_3_conv")(x)
    x = L.BatchNormalization(axis=3, epsilon=EPS, name=name + "_3_bn")(x)
    x = L.Add(name=name + "_add")([shortcut, x])
    return L.Activation("relu", name=name + "_out")(x)


def stack1(x, filters, blocks, stride1=2, name=None):
    x = block1(x, filters, stride=stride1, name=name + "_block1")
    for i in range(2, blocks + 1):
        x = block1(x, filters, conv_shortcut=False, name=name + "_block" + str(i))
    return x


def build(classes=5):
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(inp)
    x = L.Conv2D(8, 7, strides=2, name="conv1_conv")(x)
    x = L.BatchNormalization(axis=3, epsilon=EPS, name="conv1_bn")(x)
    x = L.Activation("relu", name="conv1_relu")(x)
    x = L.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = L.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = stack1(x, 8, 2, stride1=1, name="conv2")
    x = stack1(x, 16, 2, name="conv3")
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inp, L.Dense(classes, name="predictions")(x), name="resnet_v1")


def model():
    keras.utils.set_random_seed(7)
    return build()
