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

# `dilation`: the atrous rate (slim's `rate`), which Inception-ResNet v2 uses at output stride 8.
Conv = collections.namedtuple("Conv", "name filters kernel strides padding dilation", defaults=(1,))
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


def _ops_of(stage):
    """The ops one path through a stem op or a module takes (a module's branches all end on one grid)."""
    if isinstance(stage, (Conv, Pool, SeparableConv)):
        return (stage,)
    return tuple(op for op in stage[0][1] if not isinstance(op, Fork))  # a Fork's convolutions keep the grid


def features(stem, modules, channels=3):
    """FeatureInfo (endpoint, channels, reduction) of every endpoint of `stem` then `modules`, from the data:
    a module reduces the grid as much as each of its branches does."""
    from kerasnets.features import FeatureInfo

    found, reduction = [], 1
    for endpoint, stage in stem + modules:
        for op in _ops_of(stage):
            reduction *= op.strides
        if isinstance(stage, (Conv, SeparableConv)):
            channels = stage.filters
        elif not isinstance(stage, Pool):
            channels = module_channels(stage, channels)
        found.append(FeatureInfo(endpoint, channels, reduction))
    return tuple(found)


def spatial_size(stem, modules, size, until):
    """Height (or width) of endpoint `until` for an input of height (or width) `size`; None stays None."""
    for endpoint, stage in stem + modules:
        if size is None:
            return None
        for op in _ops_of(stage):
            kernel = op.kernel[0] if isinstance(op, (Conv, SeparableConv)) else op.size
            dilation = getattr(op, "dilation", 1)
            padding = getattr(op, "padding", "same")  # a SeparableConv is always "same"
            extent = (kernel - 1) * dilation + 1
            size = (-(-size // op.strides) if padding == "same" else
                    (size - extent) // op.strides + 1 if padding == "valid" else
                    -(-(size - extent) // op.strides) + 1 if padding == "ceil" else
                    (size + 2 * (extent // 2) - extent) // op.strides + 1)  # "symmetric"
        if endpoint == until:
            return size
    raise ValueError(f"unknown endpoint {until!r}")


def restyle(stages, change):
    """`stages` (a stem, modules, or one module's branches) with every op replaced by `change(op)`: slim's
    network options (align_feature_maps, output_stride) as edits of the data."""
    def edit(item):
        if isinstance(item, (Conv, Pool, SeparableConv)):
            return change(item)
        if isinstance(item, Fork):
            return Fork(tuple(edit(c) for c in item.convs))
        if isinstance(item, tuple):
            return tuple(edit(i) for i in item)
        return item  # a name
    return edit(stages)


def check_aux_input(shape, stem, modules, aux_input):
    """slim's auxiliary classifier (below) needs a known input size whose `aux_input` map is at least 5x5."""
    sizes = [spatial_size(stem, modules, d, aux_input) for d in shape[:2]]
    if None in sizes or min(sizes) < 5:
        smallest = next(s for s in range(8, 2048) if spatial_size(stem, modules, s, aux_input) >= 5)
        raise ValueError(f"aux_logits=True needs a known input size at which {aux_input} is at least 5x5 (input "
                         f"at least {smallest}x{smallest}); input_shape={tuple(shape)} gives {aux_input} {sizes}")


def slim_aux_classifier(x, net, settings, scope, pool_name, conv_name):
    """The auxiliary classifier of slim's Inception v4 and Inception-ResNet v2: 5x5/3 average pool, 128 1x1,
    a 768 convolution as large as its input (so its output is 1x1), flattened, and fully connected logits
    named `scope` (float32). Slim sizes the convolution from the graph, so the input's size must be known."""
    x = keras.layers.AveragePooling2D(5, strides=3, padding="valid", name=f"{scope}.{pool_name}")(x)
    x = unit(x, conv(None, 128, 1), f"{scope}/Conv2d_1b_1x1", settings)
    x = unit(x, conv(None, 768, tuple(x.shape[1:3]), padding="valid"), f"{scope}/{conv_name}", settings)
    x = keras.layers.Flatten(name=f"{scope}.Flatten")(x)
    return keras.layers.Dense(net.classes, kernel_initializer="glorot_uniform", dtype="float32", name=scope)(x)


def unit(x, op, scope, settings, depth=int, endpoint=False):
    """The op in slim `scope`: a `Conv` (convolution, batch norm, ReLU), a `SeparableConv` (with a ReLU) or a
    `Pool`. As a stem unit (`endpoint`), its last layer carries the scope's name and a convolution is
    `<scope>.Conv2D`."""
    name = scope.replace("/", ".")
    if isinstance(op, Pool):
        return blocks.pool(x, op.kind, op.size, name, strides=op.strides, padding=op.padding)
    if isinstance(op, SeparableConv):
        x = keras.layers.SeparableConv2D(depth(op.filters), op.kernel, strides=op.strides, padding="same",
                                         depth_multiplier=op.multiplier,
                                         depthwise_initializer=blocks.fresh_initializer(settings.initializer),
                                         pointwise_initializer=blocks.fresh_initializer(settings.initializer),
                                         name=f"{name}.Conv2D" if endpoint else name)(x)
        return blocks.activation(x, name if endpoint else f"{name}.Relu", settings)
    return blocks.conv_norm_act(x, depth(op.filters), op.kernel, name, settings, strides=op.strides,
                                padding=op.padding, dilation_rate=op.dilation,
                                conv_name=f"{name}.Conv2D" if endpoint else name,
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
    up = keras.layers.Conv2D(x.shape[-1], 1, use_bias=True,
                             kernel_initializer=blocks.fresh_initializer(settings.initializer),
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
