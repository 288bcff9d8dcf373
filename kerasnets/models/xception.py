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

import collections
import functools

import keras

from kerasnets import build, registry
from kerasnets.features import FeatureInfo
from kerasnets.layers import blocks

DEFAULT_SIZE = 299
MIN_SIZE = 71
MIDDLE_FLOW_BLOCKS = 8
CONV_SETTINGS = blocks.ConvSettings()  # keras.applications': Glorot-uniform kernels, batch norm epsilon 1e-3

# A residual block of separable convolutions. Strided blocks end in 3x3/2 max pooling and have a 1x1/2
# convolution shortcut; `first_relu`: whether a ReLU precedes the first separable convolution.
Block = collections.namedtuple("Block", "name filters strided first_relu")

STEM = (("EntryFlow_Block1.Conv2d_1", 32, 2), ("EntryFlow_Block1.Conv2d_2", 64, 1))  # 3x3, valid: 147x147x64
BLOCKS = (
    Block("EntryFlow_Block2", (128, 128), True, False),  # 74x74x128 at 299
    Block("EntryFlow_Block3", (256, 256), True, True),  # 37x37x256
    Block("EntryFlow_Block4", (728, 728), True, True),  # 19x19x728
    *(Block(f"MiddleFlow_Block{i}", (728, 728, 728), False, True) for i in range(1, MIDDLE_FLOW_BLOCKS + 1)),
    Block("ExitFlow_Block1", (728, 1024), True, True),  # 10x10x1024
)
EXIT_FLOW_CONVS = (1536, 2048)  # separable, each followed by BN and ReLU: ExitFlow, 10x10x2048
STRIDED_BLOCKS = tuple(b for b in BLOCKS if b.strided)


def separable_blocks():
    """(block, number of separable convolutions) in keras.applications' order (its block2 ... block14)."""
    return tuple((b.name, len(b.filters)) for b in BLOCKS) + (("ExitFlow", len(EXIT_FLOW_CONVS)),)


def _block(x, block, settings, strides, dilation):
    shortcut = x
    if block.strided:
        shortcut = blocks.conv(x, block.filters[-1], 1, f"{block.name}.Shortcut", settings, strides=strides)
        shortcut = blocks.batch_norm(shortcut, f"{block.name}.Shortcut.BatchNorm", settings)
    for j, filters in enumerate(block.filters, start=1):
        x = blocks.activated_separable_conv_norm(x, filters, f"{block.name}.SeparableConv2d_{j}", settings,
                                                 pre_activation=block.first_relu or j > 1, dilation_rate=dilation)
    if block.strided:
        x = keras.layers.MaxPooling2D(3, strides=strides, padding="same", name=f"{block.name}.MaxPool")(x)
    return keras.layers.Add(name=block.name)([x, shortcut])


def _body(x, net, output_stride=None):
    settings = CONV_SETTINGS.with_initializer(net.initializer)
    for j, (scope, filters, strides) in enumerate(STEM, start=1):
        x = blocks.conv_norm_act(x, filters, 3, scope, settings, strides=strides, padding="valid",
                                 output_name="EntryFlow_Block1" if j == len(STEM) else None)
    yield "EntryFlow_Block1", x
    # Once the grid is output_stride times smaller, strided blocks keep it and the convolutions dilate.
    stem_reduction = STEM[0][2] * STEM[1][2]
    schedule, exit_dilation = blocks.atrous_schedule(stem_reduction, [2 if b.strided else 1 for b in BLOCKS],
                                                     output_stride)
    for block, (strides, dilation) in zip(BLOCKS, schedule):
        x = _block(x, block, settings, strides, dilation)
        yield block.name, x
    for j, filters in enumerate(EXIT_FLOW_CONVS, start=1):
        scope = f"ExitFlow.SeparableConv2d_{j}"
        x = blocks.activated_separable_conv_norm(x, filters, scope, settings, pre_activation=False,
                                                 dilation_rate=exit_dilation)
        x = blocks.activation(x, "ExitFlow" if j == len(EXIT_FLOW_CONVS) else f"{scope}.Relu", settings)
    yield "ExitFlow", x


def xception(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", name="Xception", final_endpoint="ExitFlow", output_stride=None):
    """Instantiates Xception (Chollet, CVPR 2017).

    Args follow keras.applications: `include_top`, `weights` (None,
    "imagenet", a keras.applications-layout `.h5`, or a Keras
    `.weights.h5`/`.keras` file from kerasnets), `input_tensor`,
    `input_shape` (at least 71x71, default 299x299x3), `pooling`, `classes`,
    `classifier_activation`, `name`; `final_endpoint` truncates after that
    endpoint (with include_top=False); `output_stride` (None: 32; 16 or 8)
    keeps the grid that much finer: the later strided blocks keep it and the
    separable convolutions after them dilate (atrous, for dense prediction;
    the weights are the same). A kept block's 3x3 max pooling then runs at
    stride 1 undilated, so unlike ResNet's the atrous network is close to,
    not equal to, the plain one (DeepLab's aligned Xception strides by
    convolutions instead).
    """
    if output_stride not in (None, 8, 16, 32):
        raise ValueError(f"output_stride must be None, 8, 16 or 32, got output_stride={output_stride!r}")
    return build.build_model(
        "xception", functools.partial(_body, output_stride=output_stride), include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, final_endpoint=final_endpoint,
        initializer=CONV_SETTINGS.initializer)


def _features():
    reduction = 2  # the stem's first convolution
    features = [FeatureInfo("EntryFlow_Block1", STEM[-1][1], reduction)]
    for block in BLOCKS:
        reduction *= 2 if block.strided else 1
        features.append(FeatureInfo(block.name, block.filters[-1], reduction))
    return tuple(features) + (FeatureInfo("ExitFlow", EXIT_FLOW_CONVS[-1], reduction),)


IMAGENET = registry.keras_applications_weights(
    "xception/xception", "0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97",
    preprocessing="tf", input_size=DEFAULT_SIZE, top1=79.0)
CONFIG = registry.register(registry.ModelConfig(
    name="xception", builder=xception, family="xception", paper="https://arxiv.org/abs/1610.02357",
    default_size=DEFAULT_SIZE, min_size=MIN_SIZE, params=22_910_480, macs=8_357_403_496, features=_features(),
    weights=(IMAGENET,)))
