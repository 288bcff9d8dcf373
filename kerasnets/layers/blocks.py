"""Convolution units shared by the families.

Naming follows slim: a unit's convolution is named after its scope (or
`<endpoint>.Conv2D` when the unit's output is an endpoint, which the unit's
activation then carries), its batch norm `<scope>.BatchNorm`, its activation
`<scope>.Relu`.
"""

import dataclasses
from typing import Any, Optional

import keras

from kerasnets.layers import atrous


@dataclasses.dataclass(frozen=True)
class ConvSettings:
    """A family's hyper-parameters shared by every convolution unit (slim's arg_scope)."""

    initializer: Any = "glorot_uniform"
    batch_norm_epsilon: float = 1e-3
    batch_norm_momentum: float = 0.99
    batch_norm_scale: bool = True  # gamma; slim's Inception nets have none
    activation: str = "relu"

    def with_initializer(self, initializer):
        return dataclasses.replace(self, initializer=initializer)


def fresh_initializer(initializer):
    """Its own instance for each layer: Keras 3 draws the same numbers every time one unseeded instance is
    called, so layers sharing a family's instance would start with identical kernels."""
    if isinstance(initializer, keras.initializers.Initializer):
        return type(initializer).from_config(initializer.get_config())
    return initializer


def conv(x, filters, kernel, name, settings, strides=1, padding="same", use_bias=False, dilation_rate=1, groups=1,
         by_taps=False):
    """A Conv2D. `padding="symmetric"` pads kernel // 2 on every side first (as Caffe and PyTorch do),
    where TF's "same" pads a stride-2 layer's bottom-right only. `by_taps`: an `atrous.AtrousConv2D`, which
    runs large rates on small grids tap by tap (DeepLab's ASPP)."""
    if padding == "symmetric":
        size = kernel if isinstance(kernel, int) else kernel[0]
        x = keras.layers.ZeroPadding2D(size // 2 * dilation_rate, name=f"{name}.Pad")(x)
        padding = "valid"
    layer = atrous.AtrousConv2D if by_taps else keras.layers.Conv2D
    return layer(filters, kernel, strides=strides, padding=padding, use_bias=use_bias, dilation_rate=dilation_rate,
                 groups=groups, kernel_initializer=fresh_initializer(settings.initializer), name=name)(x)


def depthwise_conv(x, kernel, name, settings, strides=1, dilation_rate=1, depth_multiplier=1, padding="same"):
    """A DepthwiseConv2D without bias; `padding="symmetric"` as in `conv`."""
    if padding == "symmetric":
        x = keras.layers.ZeroPadding2D(kernel // 2 * dilation_rate, name=f"{name}.Pad")(x)
        padding = "valid"
    return keras.layers.DepthwiseConv2D(kernel, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                                        dilation_rate=dilation_rate, use_bias=False,
                                        depthwise_initializer=fresh_initializer(settings.initializer), name=name)(x)


def atrous_schedule(reduction, strides, output_stride):
    """For a network's successive `strides`, starting at `reduction`: `([(stride, dilation), ...], dilation after
    the last)`. Once the grid is `output_stride` times smaller than the input, a layer that would stride keeps
    it and the layers from there on dilate by the strides skipped (slim's `resnet_utils.stack_blocks_dense`)."""
    rate, schedule = 1, []
    for stride in strides:
        if output_stride is not None and reduction == output_stride:
            schedule.append((1, rate))
            rate *= stride
        else:
            schedule.append((stride, 1))
            reduction *= stride
    return schedule, rate


def batch_norm(x, name, settings):
    return keras.layers.BatchNormalization(epsilon=settings.batch_norm_epsilon, momentum=settings.batch_norm_momentum,
                                           scale=settings.batch_norm_scale, name=name)(x)


def activation(x, name, settings):
    return keras.layers.Activation(settings.activation, name=name)(x)


def conv_norm_act(x, filters, kernel, scope, settings, strides=1, padding="same", conv_name=None, output_name=None,
                  use_bias=False, dilation_rate=1, by_taps=False):
    """Convolution, batch norm and activation (slim.conv2d with its normalizer_fn).

    `conv_name` defaults to `scope`; `output_name` (the activation's) to `<scope>.Relu`.
    """
    x = conv(x, filters, kernel, conv_name or scope, settings, strides=strides, padding=padding, use_bias=use_bias,
             dilation_rate=dilation_rate, by_taps=by_taps)
    x = batch_norm(x, f"{scope}.BatchNorm", settings)
    return activation(x, output_name or f"{scope}.Relu", settings)


def activated_separable_conv_norm(x, filters, scope, settings, pre_activation=True, kernel=3, dilation_rate=1):
    """Xception's unit: (activation,) depthwise separable convolution, batch norm."""
    if pre_activation:
        x = activation(x, f"{scope}.Relu", settings)
    x = keras.layers.SeparableConv2D(filters, kernel, padding="same", use_bias=False, dilation_rate=dilation_rate,
                                     depthwise_initializer=fresh_initializer(settings.initializer),
                                     pointwise_initializer=fresh_initializer(settings.initializer), name=scope)(x)
    return batch_norm(x, f"{scope}.BatchNorm", settings)


def pool(x, kind, size, name, strides=None, padding="valid"):
    """Max ("max") or average ("avg") pooling. Two of PyTorch's paddings besides "valid"/"same":
    "symmetric" pads size // 2 zeros on every side, so an average counts them (`count_include_pad=True`);
    "ceil" lets the last window run up to strides - 1 past the end (`ceil_mode=True`), padded with zeros,
    which for a max of ReLU outputs (never negative) is PyTorch's -inf."""
    layer = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
    strides = strides or size
    if padding in ("symmetric", "ceil"):
        pad = size // 2 if padding == "symmetric" else ((0, strides - 1), (0, strides - 1))
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}.Pad")(x)
        padding = "valid"
    return layer(size, strides=strides, padding=padding, name=name)(x)


def padded_max_pool(x, name, size=3, strides=2, pad: Optional[int] = 1):
    """Max pooling after explicit zero padding (keras.applications' and torchvision's ResNet stem)."""
    x = keras.layers.ZeroPadding2D(pad, name=f"{name}.Pad")(x)
    return keras.layers.MaxPooling2D(size, strides=strides, name=name)(x)
