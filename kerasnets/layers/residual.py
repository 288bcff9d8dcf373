"""Residual units (He et al. 2016): basic, bottleneck v1 and pre-activation bottleneck v2.

Each takes the unit's scope (slim's `block1.unit_1.bottleneck_v1`), its
filters, stride, whether its shortcut projects, and the name its output
carries. `groups` splits the 3x3 convolution into groups (ResNeXt);
`attention(x, scope)` rescales the residual branch before the addition
(squeeze-and-excitation). For dense prediction (atrous networks) `dilation`
is the rate of the convolutions that see the unit's input grid and
`dilation_after_stride` (default: the same) that of the convolutions after
the point where the unit strides, which is larger when that stride has been
removed. The bottlenecks expand to `EXPANSION` x filters.
"""

import keras

from kerasnets.layers.blocks import activation, batch_norm, conv

EXPANSION = 4


def _attend(x, scope, attention):
    return x if attention is None else attention(x, scope)


def bottleneck_v1(x, scope, filters, strides, project, output_name, settings, groups=1, attention=None,
                  dilation=1, dilation_after_stride=None):
    """1x1, 3x3, 1x1 (x4) with batch norm; keras.applications' v1 strides in the first 1x1 and has biases."""
    shortcut = x
    if project:
        shortcut = conv(x, EXPANSION * filters, 1, f"{scope}.shortcut", settings, strides=strides, padding="valid",
                        use_bias=True)
        shortcut = batch_norm(shortcut, f"{scope}.shortcut.BatchNorm", settings)
    x = conv(x, filters, 1, f"{scope}.conv1", settings, strides=strides, padding="valid", use_bias=True)
    x = activation(batch_norm(x, f"{scope}.conv1.BatchNorm", settings), f"{scope}.conv1.Relu", settings)
    x = conv(x, filters, 3, f"{scope}.conv2", settings, groups=groups, padding="same", use_bias=True,
             dilation_rate=dilation_after_stride or dilation)
    x = activation(batch_norm(x, f"{scope}.conv2.BatchNorm", settings), f"{scope}.conv2.Relu", settings)
    x = conv(x, EXPANSION * filters, 1, f"{scope}.conv3", settings, padding="valid", use_bias=True)
    x = _attend(batch_norm(x, f"{scope}.conv3.BatchNorm", settings), scope, attention)
    x = keras.layers.Add(name=f"{scope}.add")([shortcut, x])
    return activation(x, output_name, settings)


def bottleneck_v2(x, scope, filters, strides, project, output_name, settings, groups=1, attention=None,
                  dilation=1, dilation_after_stride=None):
    """Pre-activation: batch norm and ReLU first; strides in the 3x3 (keras.applications' ResNetV2), so no 3x3
    convolution comes after the stride (`dilation_after_stride` changes nothing)."""
    preact = activation(batch_norm(x, f"{scope}.preact", settings), f"{scope}.preact.Relu", settings)
    if project:
        shortcut = conv(preact, EXPANSION * filters, 1, f"{scope}.shortcut", settings, strides=strides,
                        padding="valid", use_bias=True)
    elif strides > 1:
        shortcut = keras.layers.MaxPooling2D(1, strides=strides, name=f"{scope}.shortcut")(x)
    else:
        shortcut = x
    x = conv(preact, filters, 1, f"{scope}.conv1", settings, padding="valid")
    x = activation(batch_norm(x, f"{scope}.conv1.BatchNorm", settings), f"{scope}.conv1.Relu", settings)
    x = conv(x, filters, 3, f"{scope}.conv2", settings, groups=groups, strides=strides, padding="symmetric",
             dilation_rate=dilation)
    x = activation(batch_norm(x, f"{scope}.conv2.BatchNorm", settings), f"{scope}.conv2.Relu", settings)
    x = _attend(conv(x, EXPANSION * filters, 1, f"{scope}.conv3", settings, padding="valid", use_bias=True), scope,
                attention)
    return keras.layers.Add(name=output_name)([shortcut, x])


def bottleneck_v1b(x, scope, filters, strides, project, output_name, settings, groups=1, attention=None,
                   width=None, dilation=1, dilation_after_stride=None):
    """torchvision's and timm's bottleneck ("ResNet v1.5"): no biases, the stride in the 3x3 (padded 1 on every
    side, as PyTorch pads; no 3x3 follows it), `width` channels in the 1x1 and 3x3 (ResNeXt's groups x width per
    group; default `filters`), a strided 1x1 projection."""
    width = width or filters
    shortcut = x
    if project:
        shortcut = conv(x, EXPANSION * filters, 1, f"{scope}.shortcut", settings, strides=strides, padding="valid")
        shortcut = batch_norm(shortcut, f"{scope}.shortcut.BatchNorm", settings)
    x = conv(x, width, 1, f"{scope}.conv1", settings, padding="valid")
    x = activation(batch_norm(x, f"{scope}.conv1.BatchNorm", settings), f"{scope}.conv1.Relu", settings)
    x = conv(x, width, 3, f"{scope}.conv2", settings, groups=groups, strides=strides, padding="symmetric",
             dilation_rate=dilation)
    x = activation(batch_norm(x, f"{scope}.conv2.BatchNorm", settings), f"{scope}.conv2.Relu", settings)
    x = conv(x, EXPANSION * filters, 1, f"{scope}.conv3", settings, padding="valid")
    x = _attend(batch_norm(x, f"{scope}.conv3.BatchNorm", settings), scope, attention)
    x = keras.layers.Add(name=f"{scope}.add")([shortcut, x])
    return activation(x, output_name, settings)


def basic(x, scope, filters, strides, project, output_name, settings, groups=1, attention=None, dilation=1,
          dilation_after_stride=None):
    """Two 3x3 convolutions without biases (torchvision's resnet18/34)."""
    shortcut = x
    if project:
        shortcut = conv(x, filters, 1, f"{scope}.shortcut", settings, strides=strides, padding="valid")
        shortcut = batch_norm(shortcut, f"{scope}.shortcut.BatchNorm", settings)
    x = conv(x, filters, 3, f"{scope}.conv1", settings, groups=groups, strides=strides, padding="symmetric",
             dilation_rate=dilation)
    x = activation(batch_norm(x, f"{scope}.conv1.BatchNorm", settings), f"{scope}.conv1.Relu", settings)
    x = conv(x, filters, 3, f"{scope}.conv2", settings, padding="same",
             dilation_rate=dilation_after_stride or dilation)
    x = _attend(batch_norm(x, f"{scope}.conv2.BatchNorm", settings), scope, attention)
    x = keras.layers.Add(name=f"{scope}.add")([shortcut, x])
    return activation(x, output_name, settings)


UNITS = {"basic": basic, "bottleneck_v1": bottleneck_v1, "bottleneck_v2": bottleneck_v2,
         "bottleneck_v1b": bottleneck_v1b}
