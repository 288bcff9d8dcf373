"""Inception modules as data (Szegedy et al.): parallel branches of ops, concatenated.

A branch is a tuple of ops applied in turn: `Conv` (slim.conv2d with batch
norm and ReLU), `SeparableConv`, `Pool`, or `Fork` (parallel convolutions
whose outputs are concatenated, Inception v3's expanded filter banks). A stem is a tuple of
`(endpoint, op)`. Scopes follow slim: `Mixed_5b/Branch_1/Conv2d_0b_5x5` is
the layer `Mixed_5b.Branch_1.Conv2d_0b_5x5`, its batch norm `...BatchNorm`;
a stem unit's convolution is `<endpoint>.Conv2D`, its ReLU carries the
endpoint's name.
"""

import collections

import keras

from kerasnets.layers import blocks

Conv = collections.namedtuple("Conv", "name filters kernel strides padding")
# A depthwise separable convolution with biases and a ReLU, no batch norm (Inception v2's first layer, as slim
# builds it: its arg_scope normalises slim.conv2d only); `multiplier` is the depthwise channel multiplier.
SeparableConv = collections.namedtuple("SeparableConv", "name filters kernel strides multiplier")
Pool = collections.namedtuple("Pool", "name kind size strides padding")
Fork = collections.namedtuple("Fork", "convs")


def conv(name, filters, kernel, strides=1, padding="same"):
    return Conv(name, filters, kernel if isinstance(kernel, tuple) else (kernel, kernel), strides, padding)


def avg_pool(name, size=3, strides=1, padding="same"):
    return Pool(name, "avg", size, strides, padding)


def max_pool(name, size=3, strides=2, padding="valid"):
    return Pool(name, "max", size, strides, padding)


# The stem of Inception v3 (paper table 1, to the first module) and of Inception-ResNet v2 (figure 14 of
# Szegedy et al. 2017, as slim builds it): one op per endpoint; sizes at 299x299.
V3_STEM = (
    ("Conv2d_1a_3x3", conv(None, 32, 3, strides=2, padding="valid")),  # 149x149x32
    ("Conv2d_2a_3x3", conv(None, 32, 3, padding="valid")),  # 147x147x32
    ("Conv2d_2b_3x3", conv(None, 64, 3)),  # 147x147x64
    ("MaxPool_3a_3x3", max_pool(None)),  # 73x73x64
    ("Conv2d_3b_1x1", conv(None, 80, 1, padding="valid")),  # 73x73x80
    ("Conv2d_4a_3x3", conv(None, 192, 3, padding="valid")),  # 71x71x192
    ("MaxPool_5a_3x3", max_pool(None)),  # 35x35x192
)


def conv_scopes(stem, modules):
    """Slim scopes of every convolution of `stem` and `modules`, in the order slim creates them."""
    scopes = [endpoint for endpoint, op in stem if isinstance(op, Conv)]
    for block, branches in modules:
        for branch, ops in branches:
            for op in ops:
                scopes.extend(f"{block}/{branch}/{c.name}" for c in (op.convs if isinstance(op, Fork) else (op,))
                              if isinstance(c, Conv))
    return tuple(scopes)


def conv_layer_name(scope, endpoints):
    """Keras name of the convolution of slim `scope`: a stem unit's ReLU carries its endpoint's name."""
    name = scope.replace("/", ".")
    return f"{name}.Conv2D" if name in endpoints else name


def module_channels(branches, channels_in, depth=int):
    """Output channels of a module: the sum of its branches' last widths (a pool passes its input's)."""
    total = 0
    for _, ops in branches:
        last = ops[-1]
        total += (sum(depth(c.filters) for c in last.convs) if isinstance(last, Fork) else
                  depth(last.filters) if isinstance(last, Conv) else channels_in)
    return total


def features(stem, modules, grid_reductions=()):
    """FeatureInfo (endpoint, channels, reduction) of every endpoint, from the data: convolutions and pools
    stride, the modules in `grid_reductions` halve the grid."""
    from kerasnets.features import FeatureInfo

    found, reduction, channels = [], 1, 3
    for endpoint, op in stem + modules:
        if isinstance(op, (Conv, Pool, SeparableConv)):
            reduction *= op.strides
            channels = channels if isinstance(op, Pool) else op.filters
        else:
            reduction *= 2 if endpoint in grid_reductions else 1
            channels = module_channels(op, channels)
        found.append(FeatureInfo(endpoint, channels, reduction))
    return tuple(found)


def unit(x, op, scope, settings, depth=int, endpoint=False):
    """The op in slim `scope`: a `Conv` (convolution, batch norm, ReLU), a `SeparableConv` (with a ReLU) or a
    `Pool`. As a stem unit (`endpoint`), its last layer carries the scope's name and a convolution is
    `<scope>.Conv2D`."""
    name = scope.replace("/", ".")
    if isinstance(op, Pool):
        return blocks.pool(x, op.kind, op.size, name, strides=op.strides, padding=op.padding)
    if isinstance(op, SeparableConv):
        x = keras.layers.SeparableConv2D(depth(op.filters), op.kernel, strides=op.strides, padding="same",
                                         depth_multiplier=op.multiplier, depthwise_initializer=settings.initializer,
                                         pointwise_initializer=settings.initializer,
                                         name=f"{name}.Conv2D" if endpoint else name)(x)
        return blocks.activation(x, name if endpoint else f"{name}.Relu", settings)
    return blocks.conv_norm_act(x, depth(op.filters), op.kernel, name, settings, strides=op.strides,
                                padding=op.padding, conv_name=f"{name}.Conv2D" if endpoint else name,
                                output_name=name if endpoint else None)


def branch(x, ops, scope, settings, depth=int):
    for op in ops:
        if isinstance(op, Fork):
            forks = [unit(x, c, f"{scope}/{c.name}", settings, depth) for c in op.convs]
            x = keras.layers.Concatenate(name=f"{scope.replace('/', '.')}.concat")(forks)
        else:
            x = unit(x, op, f"{scope}/{op.name}", settings, depth)
    return x


def module(x, block, branches, settings, depth=int):
    """The module `block`: its branches side by side, concatenated into the endpoint `block`."""
    outputs = [branch(x, ops, f"{block}/{name}", settings, depth) for name, ops in branches]
    return keras.layers.Concatenate(name=block)(outputs)


def residual_module(x, scope, branches, settings, scale, output_name, activate=True):
    """Inception-ResNet's unit (Szegedy et al. 2017): the branches, concatenated, projected back to the input's
    width by a 1x1 convolution with biases and no batch norm (`Conv2d_1x1`), scaled by `scale`, added to the
    input, then a ReLU (unless `activate` is False); the output is named `output_name`."""
    name = scope.replace("/", ".")
    mixed = keras.layers.Concatenate(name=f"{name}.concat")(
        [branch(x, ops, f"{scope}/{branch_name}", settings) for branch_name, ops in branches])
    up = keras.layers.Conv2D(x.shape[-1], 1, use_bias=True, kernel_initializer=settings.initializer,
                             name=f"{name}.Conv2d_1x1")(mixed)
    up = keras.layers.Rescaling(scale, name=f"{name}.Scale")(up)
    x = keras.layers.Add(name=f"{name}.add" if activate else output_name)([x, up])
    return blocks.activation(x, output_name, settings) if activate else x


def stem_and_modules(x, stem, modules, settings, depth=int):
    """Yields `(endpoint, tensor)` through the stem's units, then the modules (pools may stand between)."""
    for endpoint, op in stem:
        x = unit(x, op, endpoint, settings, depth, endpoint=True)
        yield endpoint, x
    for block, branches in modules:
        if isinstance(branches, Pool):  # a pooling endpoint between modules (Inception v1's MaxPool_4a_3x3)
            x = unit(x, branches, block, settings, depth, endpoint=True)
        else:
            x = module(x, block, branches, settings, depth)
        yield block, x
