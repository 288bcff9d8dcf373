"""Inception v1 (GoogLeNet) with TF-slim's endpoints.

Reference:
  Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich,
  "Going Deeper with Convolutions", CVPR 2015 (https://arxiv.org/abs/1409.4842).

TF-slim's `nets/inception_v1.py` layer for layer: the paper's table 1 with
batch norm after every convolution (no gamma, epsilon 0.001) and, as in slim
and torchvision, a 3x3 convolution where the paper's "5x5" branch has 5x5.
Slim's checkpoint names the second convolution of that branch in Mixed_5b
`Conv2d_0a_3x3` (not `0b`), and so do we. Every convolution and pooling is
`same`-padded, so any input from 32x32 up works; the classifier pools
globally (slim's 7x7 average pool at 224x224), drops out 20% (`Dropout_0b`)
and scores with a 1x1 convolution, here the equivalent `Logits` Dense layer.

torchvision's GoogLeNet is the same network with three differences, built by
`variant="torchvision"` (chosen by itself for a PyTorch state dict): batch
norm with gamma, the 7x7/2 stem convolution padded 3 on every side, and
stride-2 max pools in PyTorch's `ceil_mode` (the last window may overhang).
Its published weights were trained with `transform_input=True`, which turns
ImageNet mean/std-normalised input back into pixels scaled to [-1, 1]: that is
the preprocessing registered with them ("tf"), and the model itself has no
such layer. Its auxiliary classifiers (`aux1`, `aux2`) are in the file and
left unused: they only serve training.
"""

import dataclasses
import functools

import keras

from kerasnets import build, registry
from kerasnets.layers import blocks, inception
from kerasnets.layers.inception import conv, max_pool

DEFAULT_SIZE = 224
MIN_SIZE = 32
# slim's inception_v1_arg_scope (inception_utils): batch norm without gamma, epsilon 0.001, decay 0.9997;
# inception_v1_base initialises its convolutions from a truncated normal with stddev 0.01.
CONV_SETTINGS = blocks.ConvSettings(initializer=keras.initializers.TruncatedNormal(stddev=0.01),
                                    batch_norm_epsilon=0.001, batch_norm_momentum=0.9997, batch_norm_scale=False)
# torchvision's BasicConv2d: batch norm with gamma, epsilon 0.001, PyTorch's momentum 0.1 (Keras' 0.9).
TORCH_SETTINGS = dataclasses.replace(CONV_SETTINGS, batch_norm_momentum=0.9, batch_norm_scale=True)
VARIANTS = ("slim", "torchvision")

STEM = (
    ("Conv2d_1a_7x7", conv(None, 64, 7, strides=2)),  # 112x112x64 at 224
    ("MaxPool_2a_3x3", max_pool(None, padding="same")),  # 56x56x64
    ("Conv2d_2b_1x1", conv(None, 64, 1)),
    ("Conv2d_2c_3x3", conv(None, 192, 3)),  # 56x56x192
    ("MaxPool_3a_3x3", max_pool(None, padding="same")),  # 28x28x192
)


def _module(b0, b1, b2, b3, b2_second="Conv2d_0b_3x3"):
    """Paper figure 2(b): 1x1; 1x1 then 3x3; 1x1 then 3x3 (the paper's 5x5); 3x3 max pool then 1x1."""
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", b0, 1),)),
        ("Branch_1", (conv("Conv2d_0a_1x1", b1[0], 1), conv("Conv2d_0b_3x3", b1[1], 3))),
        ("Branch_2", (conv("Conv2d_0a_1x1", b2[0], 1), conv(b2_second, b2[1], 3))),
        ("Branch_3", (max_pool("MaxPool_0a_3x3", strides=1, padding="same"), conv("Conv2d_0b_1x1", b3, 1))),
    )


# Table 1 of the paper: #1x1, (#3x3 reduce, #3x3), (#5x5 reduce, #5x5), pool proj.
MODULES = (
    ("Mixed_3b", _module(64, (96, 128), (16, 32), 32)),  # 28x28x256
    ("Mixed_3c", _module(128, (128, 192), (32, 96), 64)),  # 28x28x480
    ("MaxPool_4a_3x3", max_pool(None, padding="same")),  # 14x14x480
    ("Mixed_4b", _module(192, (96, 208), (16, 48), 64)),  # 14x14x512
    ("Mixed_4c", _module(160, (112, 224), (24, 64), 64)),
    ("Mixed_4d", _module(128, (128, 256), (24, 64), 64)),
    ("Mixed_4e", _module(112, (144, 288), (32, 64), 64)),  # 14x14x528
    ("Mixed_4f", _module(256, (160, 320), (32, 128), 128)),  # 14x14x832
    ("MaxPool_5a_2x2", max_pool(None, size=2, padding="same")),  # 7x7x832
    ("Mixed_5b", _module(256, (160, 320), (32, 128), 128, b2_second="Conv2d_0a_3x3")),  # 7x7x832
    ("Mixed_5c", _module(384, (192, 384), (48, 128), 128)),  # 7x7x1024
)
ENDPOINTS = tuple(name for name, _ in STEM + MODULES)


def _as_torchvision(op):
    """PyTorch's padding where it differs from slim's: the stride-2 convolution pads 3 on every side, the
    stride-2 max pools run in ceil_mode."""
    if op.strides == 1:
        return op
    return op._replace(padding="symmetric" if isinstance(op, inception.Conv) else "ceil")


def _body(x, net, variant):
    stem, modules, settings = STEM, MODULES, CONV_SETTINGS
    if variant == "torchvision":
        stem, modules = inception.restyle(STEM, _as_torchvision), inception.restyle(MODULES, _as_torchvision)
        settings = TORCH_SETTINGS
    yield from inception.stem_and_modules(x, stem, modules, settings.with_initializer(net.initializer))


def inception_v1(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, final_endpoint="Mixed_5c",
                 dropout_rate=0.2, variant=None):
    """Instantiates Inception v1 / GoogLeNet (Szegedy et al., CVPR 2015) with TF-slim's endpoints.

    Args follow keras.applications: `include_top`, `weights` (None;
    "imagenet", TF-slim's published checkpoint, fetched and extracted; a
    TF-slim checkpoint prefix -- both 1001 classes, or 1000 with slim's
    background class dropped; or a Keras `.weights.h5`/`.keras` file),
    `input_tensor`, `input_shape` (at least 32x32, default 224x224x3),
    `pooling`, `classes`, `classifier_activation`, `name`; `final_endpoint`
    truncates after that endpoint (with include_top=False); `dropout_rate`
    before `Logits` (slim keeps 0.8: rate 0.2); `variant` (None: what the
    weights are written for; "slim"; "torchvision": torchvision's GoogLeNet,
    for its `.pth`/`.safetensors` state dicts and `weights="torchvision"`).
    The model is named "InceptionV1" (slim) or "InceptionV1_torchvision".
    """
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)
    variant = build.choose_variant("inception_v1", variant, weights, VARIANTS)
    if name is None:
        name = "InceptionV1" + ("_torchvision" if variant == "torchvision" else "")
    return build.build_model(
        "inception_v1", functools.partial(_body, variant=variant), include_top=include_top, weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
        name=name, final_endpoint=final_endpoint, initializer=CONV_SETTINGS.initializer,
        head=build.ClassifierHead("AvgPool_0a_7x7", (dropout_rate, "Dropout_0b")))


CONFIG = registry.register(registry.ModelConfig(
    name="inception_v1", builder=inception_v1, family="inception_v1", paper="https://arxiv.org/abs/1409.4842",
    default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=inception.features(STEM, MODULES), params=6_632_184, macs=1_498_376_192,
    preprocessing="tf",
    weights=(registry.slim_weights("inception_v1_2016_08_28.tar.gz", "inception_v1.ckpt", input_size=DEFAULT_SIZE,
                                   top1=69.8),
             # trained with transform_input=True: the input it sees is pixels scaled to [-1, 1]
             registry.torchvision_weights("torchvision", "googlenet-1378be20.pth", top1=69.778, preprocessing="tf"))))
registry.register_alias("googlenet", "inception_v1")


def googlenet(**kwargs):
    """`inception_v1(**kwargs)` under the paper's name for it (the model is named "GoogLeNet", or
    "GoogLeNet_torchvision" for torchvision's architecture)."""
    variant = build.choose_variant("inception_v1", kwargs.get("variant"), kwargs.get("weights"), VARIANTS)
    return inception_v1(**{"name": "GoogLeNet" + ("_torchvision" if variant == "torchvision" else ""), **kwargs})
