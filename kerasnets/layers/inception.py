"""Inception modules as data (Szegedy et al.): parallel branches of ops, concatenated.

A branch is a tuple of ops applied in turn: `Conv` (slim.conv2d with batch
norm and ReLU), `Pool`, or `Fork` (parallel convolutions whose outputs are
concatenated, Inception v3's expanded filter banks). A stem is a tuple of
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
    for _, ops in branches:  # (a module's branches)
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
    """A `Conv` op (convolution, batch norm, ReLU) in slim `scope`, or a `Pool` op named after it."""
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
