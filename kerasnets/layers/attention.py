"""Channel attention for residual units: squeeze-and-excitation (Hu, Shen, Sun, CVPR 2018, figure 3).

`squeeze_excitation(reduction)` returns an `attention(x, scope)` hook that any
unit in `layers.residual` takes: global average pool (squeeze), a 1x1
convolution to channels / reduction with ReLU, one back with a sigmoid
(excitation), and the input rescaled channel by channel. The 1x1
convolutions with biases are timm's `SEModule` (`se.fc1`, `se.fc2`), the
layout its SE-ResNet and SE-ResNeXt weights are written in.
"""

import functools

import keras


def _squeeze_excite(x, scope, reduction):
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{scope}.se.pool")(x)
    s = keras.layers.Conv2D(channels // reduction, 1, activation="relu", name=f"{scope}.se.fc1")(s)
    s = keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{scope}.se.fc2")(s)
    return keras.layers.Multiply(name=f"{scope}.se.scale")([x, s])


def squeeze_excitation(reduction=16):
    """The SE hook with `reduction` (the paper's r; 16 in its networks)."""
    return functools.partial(_squeeze_excite, reduction=reduction)
