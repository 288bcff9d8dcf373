"""Inception v2 (BN-Inception) with TF-slim's endpoints.

Reference:
  Ioffe, Szegedy, "Batch Normalization: Accelerating Deep Network Training by
  Reducing Internal Covariate Shift", ICML 2015 (https://arxiv.org/abs/1502.03167),
  the network of its figure 5.

TF-slim's `nets/inception_v2.py` layer for layer: the first layer is a 7x7
depthwise separable convolution (depthwise multiplier min(depth(64) / 3, 8),
then pointwise to 64 channels, with biases and no batch norm, as slim builds
it); every other convolution has batch norm without gamma (epsilon 0.001).
Each 5x5 of GoogLeNet is two 3x3s; `Mixed_4a` and `Mixed_5a` reduce the grid
(stride-2 convolutions beside a max pool); `Mixed_5c` pools its fourth branch
with max, the other modules with average. Everything is `same`-padded.
`depth_multiplier` and `min_depth` scale every layer's width as slim does.
"""

import functools

from kerasnets import build, registry
from kerasnets.layers import blocks, inception
from kerasnets.layers.inception import SeparableConv, avg_pool, conv, max_pool

DEFAULT_SIZE = 224
MIN_SIZE = 32
# slim's inception_v2_arg_scope: batch norm without gamma, epsilon 0.001, decay 0.9997; variance scaling.
CONV_SETTINGS = blocks.ConvSettings(initializer="he_normal", batch_norm_epsilon=0.001, batch_norm_momentum=0.9997,
                                    batch_norm_scale=False)


def _stem(depth_multiplier):
    return (
        ("Conv2d_1a_7x7", SeparableConv(None, 64, 7, 2, depth_multiplier)),  # 112x112x64 at 224
        ("MaxPool_2a_3x3", max_pool(None, padding="same")),  # 56x56x64
        ("Conv2d_2b_1x1", conv(None, 64, 1)),
        ("Conv2d_2c_3x3", conv(None, 192, 3)),  # 56x56x192
        ("MaxPool_3a_3x3", max_pool(None, padding="same")),  # 28x28x192
    )


def _module(b0, b1, b2, b3, pool="avg"):
    """Figure 5's module: 1x1; 1x1 then 3x3; 1x1 then two 3x3; pool then 1x1."""
    pooling = avg_pool("AvgPool_0a_3x3") if pool == "avg" else max_pool("MaxPool_0a_3x3", strides=1, padding="same")
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", b0, 1),)),
        ("Branch_1", (conv("Conv2d_0a_1x1", b1[0], 1), conv("Conv2d_0b_3x3", b1[1], 3))),
        ("Branch_2", (conv("Conv2d_0a_1x1", b2[0], 1), conv("Conv2d_0b_3x3", b2[1], 3),
                      conv("Conv2d_0c_3x3", b2[1], 3))),
        ("Branch_3", (pooling, conv("Conv2d_0b_1x1", b3, 1))),
    )


def _reduction(b0, b1):
    """A grid reduction: 1x1 then 3x3/2; 1x1, 3x3 then 3x3/2; 3x3/2 max pool."""
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", b0[0], 1), conv("Conv2d_1a_3x3", b0[1], 3, strides=2))),
        ("Branch_1", (conv("Conv2d_0a_1x1", b1[0], 1), conv("Conv2d_0b_3x3", b1[1], 3),
                      conv("Conv2d_1a_3x3", b1[1], 3, strides=2))),
        ("Branch_2", (max_pool("MaxPool_1a_3x3", padding="same"),)),
    )


MODULES = (
    ("Mixed_3b", _module(64, (64, 64), (64, 96), 32)),  # 28x28x256
    ("Mixed_3c", _module(64, (64, 96), (64, 96), 64)),  # 28x28x320
    ("Mixed_4a", _reduction((128, 160), (64, 96))),  # 14x14x576
    ("Mixed_4b", _module(224, (64, 96), (96, 128), 128)),
    ("Mixed_4c", _module(192, (96, 128), (96, 128), 128)),
    ("Mixed_4d", _module(160, (128, 160), (128, 160), 96)),
    ("Mixed_4e", _module(96, (128, 192), (160, 192), 96)),  # 14x14x576
    ("Mixed_5a", _reduction((128, 192), (192, 256))),  # 7x7x1024
    ("Mixed_5b", _module(352, (192, 320), (160, 224), 128)),
    ("Mixed_5c", _module(352, (192, 320), (192, 224), 128, pool="max")),  # 7x7x1024
)


def _body(x, net, depth, stem):
    yield from inception.stem_and_modules(x, stem, MODULES, CONV_SETTINGS.with_initializer(net.initializer), depth)


def inception_v2(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name="InceptionV2", final_endpoint="Mixed_5c",
                 depth_multiplier=1.0, min_depth=16, dropout_rate=0.2):
    """Instantiates Inception v2 / BN-Inception (Ioffe & Szegedy, ICML 2015) with TF-slim's endpoints.

    Args follow keras.applications: `include_top`, `weights` (None;
    "imagenet", TF-slim's published checkpoint, fetched and extracted; a
    TF-slim checkpoint prefix -- both 1001 classes, or 1000 with slim's
    background class dropped; or a Keras `.weights.h5`/`.keras` file),
    `input_tensor`, `input_shape` (at least 32x32, default 224x224x3),
    `pooling`, `classes`, `classifier_activation`, `name`. TF-slim's:
    `final_endpoint` truncates after that endpoint (with include_top=False);
    `depth_multiplier` scales every layer's filters to
    `max(int(filters * depth_multiplier), min_depth)`; `dropout_rate` before
    `Logits` (slim keeps 0.8: rate 0.2).
    """
    build.check_number("depth_multiplier", depth_multiplier)
    build.check_number("min_depth", min_depth, low=1, low_inclusive=True, integer=True)
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)

    def depth(filters):
        return max(int(filters * depth_multiplier), min_depth)

    stem = _stem(min(int(depth(64) / 3), 8))
    return build.build_model(
        "inception_v2", functools.partial(_body, depth=depth, stem=stem), include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, final_endpoint=final_endpoint,
        initializer=CONV_SETTINGS.initializer, head=build.ClassifierHead("AvgPool_1a_7x7", (dropout_rate, "Dropout_1b")))


CONFIG = registry.register(registry.ModelConfig(
    name="inception_v2", builder=inception_v2, family="inception_v2", paper="https://arxiv.org/abs/1502.03167",
    default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=inception.features(_stem(8), MODULES), params=11_198_112, macs=1_934_857_216,
    preprocessing="tf",
    weights=(registry.slim_weights("inception_v2_2016_08_28.tar.gz", "inception_v2.ckpt", input_size=DEFAULT_SIZE,
                                   top1=73.9),)))
