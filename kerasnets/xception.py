"""Xception.

Reference:
  Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions",
  CVPR 2017 (https://arxiv.org/abs/1610.02357).

Layer for layer keras.applications' Xception, named after the paper's figure 5:
the entry flow (a stem of two convolutions, then three residual blocks of
separable convolutions with 1x1 stride-2 shortcuts), the middle flow (eight
identical residual blocks) and the exit flow. Each block's output is an
endpoint: `EntryFlow_Block1` ... `EntryFlow_Block4`, `MiddleFlow_Block1` ...
`MiddleFlow_Block8`, `ExitFlow_Block1`, `ExitFlow`. Inside a block,
`EntryFlow_Block2.SeparableConv2d_1` is a separable convolution,
`...SeparableConv2d_1.BatchNorm` its batch norm and `...SeparableConv2d_1.Relu`
the ReLU that feeds it (Xception activates before each separable convolution,
except right after the stem).
"""

import keras

from kerasnets import common
from kerasnets import registry
from kerasnets import weights as weights_lib

DEFAULT_SIZE = 299
MIN_SIZE = 71
MIDDLE_FLOW_BLOCKS = 8
KERNEL_INITIALIZER = "glorot_uniform"  # keras.applications' (Keras') default

# (endpoint, filters of its separable convolutions, shortcut filters, ReLU before the first one)
ENTRY_FLOW = (
    ("EntryFlow_Block2", (128, 128), 128, False),  # 74x74x128 at 299
    ("EntryFlow_Block3", (256, 256), 256, True),  # 37x37x256
    ("EntryFlow_Block4", (728, 728), 728, True),  # 19x19x728
)
MIDDLE_FLOW = tuple((f"MiddleFlow_Block{i}", (728, 728, 728)) for i in range(1, MIDDLE_FLOW_BLOCKS + 1))
EXIT_FLOW_BLOCK = ("ExitFlow_Block1", (728, 1024), 1024, True)  # 10x10x1024
EXIT_FLOW_CONVS = (1536, 2048)  # each followed by BN and ReLU: ExitFlow, 10x10x2048

ENDPOINTS = ("EntryFlow_Block1",) + tuple(e[0] for e in ENTRY_FLOW) + tuple(e[0] for e in MIDDLE_FLOW) + (
    EXIT_FLOW_BLOCK[0], "ExitFlow")


def _separable(x, filters, scope, initializer, pre_relu):
    if pre_relu:
        x = keras.layers.Activation("relu", name=f"{scope}.Relu")(x)
    x = keras.layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, depthwise_initializer=initializer,
                                     pointwise_initializer=initializer, name=scope)(x)
    return keras.layers.BatchNormalization(name=f"{scope}.BatchNorm")(x)


def _strided_block(x, block, initializer):
    """Separable convolutions, 3x3/2 max pooling, plus a 1x1/2 convolution shortcut."""
    name, filters, shortcut_filters, first_relu = block
    shortcut = keras.layers.Conv2D(shortcut_filters, 1, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=initializer, name=f"{name}.Shortcut")(x)
    shortcut = keras.layers.BatchNormalization(name=f"{name}.Shortcut.BatchNorm")(shortcut)
    for j, f in enumerate(filters, start=1):
        x = _separable(x, f, f"{name}.SeparableConv2d_{j}", initializer, pre_relu=first_relu or j > 1)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}.MaxPool")(x)
    return keras.layers.Add(name=name)([x, shortcut])


def _identity_block(x, block, initializer):
    name, filters = block
    shortcut = x
    for j, f in enumerate(filters, start=1):
        x = _separable(x, f, f"{name}.SeparableConv2d_{j}", initializer, pre_relu=True)
    return keras.layers.Add(name=name)([x, shortcut])


def xception(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name="Xception", final_endpoint="ExitFlow"):
    """Instantiates Xception (Chollet, CVPR 2017).

    Args follow keras.applications: `include_top`, `weights` (None,
    "imagenet", a keras.applications-layout `.h5`, or a Keras
    `.weights.h5`/`.keras` file from kerasnets), `input_tensor`,
    `input_shape` (at least 71x71, default 299x299x3), `pooling`, `classes`,
    `classifier_activation`, `name`; `final_endpoint` truncates after that
    endpoint (with include_top=False).
    """
    config = registry.get_config("xception")
    common.check_final_endpoint(final_endpoint, ENDPOINTS, include_top)
    shape = common.validate_common(include_top=include_top, weights=weights, input_shape=input_shape,
                                   input_tensor=input_tensor, pooling=pooling, classes=classes, config=config)
    source = weights_lib.resolve(weights, config, include_top)
    initializer = KERNEL_INITIALIZER if source is None else "zeros"

    inputs, source_inputs = common.make_input(shape, input_tensor)
    # Entry flow, stem: 3x3/2 conv 32 and 3x3 conv 64, both valid.
    x = inputs
    for j, (filters, strides) in enumerate(((32, 2), (64, 1)), start=1):
        scope = f"EntryFlow_Block1.Conv2d_{j}"
        x = keras.layers.Conv2D(filters, 3, strides=strides, use_bias=False, kernel_initializer=initializer,
                                name=scope)(x)
        x = keras.layers.BatchNormalization(name=f"{scope}.BatchNorm")(x)
        x = keras.layers.Activation("relu", name="EntryFlow_Block1" if j == 2 else f"{scope}.Relu")(x)
    blocks = [(_strided_block, b) for b in ENTRY_FLOW] + [(_identity_block, b) for b in MIDDLE_FLOW] + [
        (_strided_block, EXIT_FLOW_BLOCK)]
    if final_endpoint != "EntryFlow_Block1":
        for apply, block in blocks:
            x = apply(x, block, initializer)
            if block[0] == final_endpoint:
                break
        else:
            for j, filters in enumerate(EXIT_FLOW_CONVS, start=1):
                x = _separable(x, filters, f"ExitFlow.SeparableConv2d_{j}", initializer, pre_relu=False)
                x = keras.layers.Activation("relu", name="ExitFlow" if j == 2 else f"ExitFlow.SeparableConv2d_{j}"
                                                                                   ".Relu")(x)
    model = common.model_with_top(inputs, source_inputs, x, include_top=include_top, pooling=pooling,
                                  classes=classes, classifier_activation=classifier_activation,
                                  initializer=initializer, name=name)
    weights_lib.load(model, source, keras_applications_layout=KERAS_APPLICATIONS_LAYOUT)
    return model


def _keras_applications_table():
    """keras.applications' Xception names -> ours (its four shortcut convolutions are unnamed)."""
    table = {}

    def pair(theirs, ours):
        table[theirs] = ours
        table[f"{theirs}_bn"] = f"{ours}.BatchNorm"

    pair("block1_conv1", "EntryFlow_Block1.Conv2d_1")
    pair("block1_conv2", "EntryFlow_Block1.Conv2d_2")
    strided = [b[0] for b in ENTRY_FLOW] + [EXIT_FLOW_BLOCK[0]]
    for i, block in enumerate(strided, start=1):
        table[f"conv2d_{i}"] = f"{block}.Shortcut"
        table[f"batch_normalization_{i}"] = f"{block}.Shortcut.BatchNorm"
    # keras.applications numbers the blocks 1..14: entry 2-4, middle 5-12, exit 13-14.
    numbered = [(b[0], len(b[1])) for b in ENTRY_FLOW + MIDDLE_FLOW + (EXIT_FLOW_BLOCK,)] + [
        ("ExitFlow", len(EXIT_FLOW_CONVS))]
    for number, (block, convs) in enumerate(numbered, start=2):
        for j in range(1, convs + 1):
            pair(f"block{number}_sepconv{j}", f"{block}.SeparableConv2d_{j}")
    table["predictions"] = "Logits"
    return table


KERAS_APPLICATIONS_LAYOUT = weights_lib.KerasApplicationsLayout(table=_keras_applications_table())


def preprocess_input(x, data_format=None):
    """Scales RGB pixels in [0, 255] to [-1, 1], as Xception was trained."""
    return keras.applications.imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


CONFIG = registry.register(registry.ModelConfig(
    name="xception",
    builder=xception,
    default_size=DEFAULT_SIZE,
    min_size=MIN_SIZE,
    preprocessing="tf",
    classes=1000,
    paper="https://arxiv.org/abs/1610.02357",
    weights=registry.keras_applications_weights("xception/xception", "0a58e3b7378bc2990ea3b43d5981f1f6",
                                                "b0042744bf5b25fce3cb969f33bebb97"),
))
