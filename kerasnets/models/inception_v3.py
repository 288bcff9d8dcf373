"""Inception v3 with TF-slim's endpoints.

Reference:
  Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception
  Architecture for Computer Vision", CVPR 2016 (https://arxiv.org/abs/1512.00567).

The network is TF-slim's `nets/inception_v3.py` layer for layer, which is also
keras.applications' InceptionV3 (same convolutions, created in the same order),
so both published weight layouts load into it. Layer names mirror slim's
variable scopes with "." for "/": `Mixed_5b.Branch_1.Conv2d_0b_5x5` is the
convolution, `...Conv2d_0b_5x5.BatchNorm` its batch norm; the layer whose
output is an endpoint carries the endpoint's name.

torchvision's Inception v3 is the same network with two differences, built by
`variant="torchvision"` (chosen by itself for a PyTorch state dict): batch
norm with gamma, and 3x3 average pools that count the padding in their mean
(PyTorch's `count_include_pad`). Its published weights were trained with
`transform_input=True`, which turns ImageNet mean/std-normalised input back
into pixels scaled to [-1, 1]: the "tf" preprocessing registered with them.
"""

import dataclasses
import functools

import keras

from kerasnets import build, registry
from kerasnets.layers import blocks, inception
from kerasnets.layers.inception import Fork, avg_pool, conv, max_pool

# Hyper-parameters shared by every convolution (slim's inception_arg_scope): batch norm without gamma,
# epsilon 0.001, decay 0.9997; slim's variance_scaling_initializer() is 2/fan_in, a truncated normal.
CONV_SETTINGS = blocks.ConvSettings(initializer="he_normal", batch_norm_epsilon=0.001, batch_norm_momentum=0.9997,
                                    batch_norm_scale=False)
# torchvision's BasicConv2d: batch norm with gamma, epsilon 0.001, PyTorch's momentum 0.1 (Keras' 0.9).
TORCH_SETTINGS = dataclasses.replace(CONV_SETTINGS, batch_norm_momentum=0.9, batch_norm_scale=True)
VARIANTS = ("slim", "torchvision")

# The stem (paper table 1 up to the first inception module), shared with Inception-ResNet v2.
STEM = inception.V3_STEM


def _module_35x35(pool_filters, branch_1_names=("Conv2d_0a_1x1", "Conv2d_0b_5x5")):
    """Figure 5 of the paper: 1x1, 5x5, double 3x3 and pooled branches."""
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", 64, 1),)),
        ("Branch_1", (conv(branch_1_names[0], 48, 1), conv(branch_1_names[1], 64, 5))),
        ("Branch_2", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_0b_3x3", 96, 3), conv("Conv2d_0c_3x3", 96, 3))),
        ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", pool_filters, 1))),
    )


def _module_17x17(width):
    """Figure 6: 7x7 convolutions factorised into 1x7 and 7x1."""
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", 192, 1),)),
        ("Branch_1", (conv("Conv2d_0a_1x1", width, 1), conv("Conv2d_0b_1x7", width, (1, 7)),
                      conv("Conv2d_0c_7x1", 192, (7, 1)))),
        ("Branch_2", (conv("Conv2d_0a_1x1", width, 1), conv("Conv2d_0b_7x1", width, (7, 1)),
                      conv("Conv2d_0c_1x7", width, (1, 7)), conv("Conv2d_0d_7x1", width, (7, 1)),
                      conv("Conv2d_0e_1x7", 192, (1, 7)))),
        ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", 192, 1))),
    )


def _module_8x8(branch_1_second="Conv2d_0b_3x1"):
    """Figure 7: expanded filter bank with 1x3 / 3x1 forks."""
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", 320, 1),)),
        ("Branch_1", (conv("Conv2d_0a_1x1", 384, 1),
                      Fork((conv("Conv2d_0b_1x3", 384, (1, 3)), conv(branch_1_second, 384, (3, 1)))))),
        ("Branch_2", (conv("Conv2d_0a_1x1", 448, 1), conv("Conv2d_0b_3x3", 384, 3),
                      Fork((conv("Conv2d_0c_1x3", 384, (1, 3)), conv("Conv2d_0d_3x1", 384, (3, 1)))))),
        ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", 192, 1))),
    )


# The inception modules, as slim names them (its scopes are the weight names).
MIXED = (
    ("Mixed_5b", _module_35x35(32)),  # 35x35x256
    ("Mixed_5c", _module_35x35(64, ("Conv2d_0b_1x1", "Conv_1_0c_5x5"))),  # 35x35x288
    ("Mixed_5d", _module_35x35(64)),  # 35x35x288
    ("Mixed_6a", (  # grid reduction to 17x17x768 (figure 10)
        ("Branch_0", (conv("Conv2d_1a_1x1", 384, 3, strides=2, padding="valid"),)),
        ("Branch_1", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_0b_3x3", 96, 3),
                      conv("Conv2d_1a_1x1", 96, 3, strides=2, padding="valid"))),
        ("Branch_2", (max_pool("MaxPool_1a_3x3"),)),
    )),
    ("Mixed_6b", _module_17x17(128)),
    ("Mixed_6c", _module_17x17(160)),
    ("Mixed_6d", _module_17x17(160)),
    ("Mixed_6e", _module_17x17(192)),  # 17x17x768
    ("Mixed_7a", (  # grid reduction to 8x8x1280
        ("Branch_0", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_1a_3x3", 320, 3, strides=2, padding="valid"))),
        ("Branch_1", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_0b_1x7", 192, (1, 7)),
                      conv("Conv2d_0c_7x1", 192, (7, 1)), conv("Conv2d_1a_3x3", 192, 3, strides=2, padding="valid"))),
        ("Branch_2", (max_pool("MaxPool_1a_3x3"),)),
    )),
    ("Mixed_7b", _module_8x8()),  # 8x8x2048
    ("Mixed_7c", _module_8x8("Conv2d_0c_3x1")),  # 8x8x2048
)

BASE_ENDPOINTS = tuple(name for name, _ in STEM) + tuple(name for name, _ in MIXED)
AUX_INPUT = "Mixed_6e"
MIN_SIZE = 75
DEFAULT_SIZE = 299


def conv_scopes():
    """Slim scopes of all base convolutions, in the order slim (and keras.applications) creates them."""
    return inception.conv_scopes(STEM, MIXED)


def conv_layer_name(scope):
    """Keras name of the convolution of slim `scope`."""
    return inception.conv_layer_name(scope, BASE_ENDPOINTS)


def _count_padding(op):
    """torchvision's 3x3/1 average pools pad 1 zero on every side and count it in the mean."""
    return op._replace(padding="symmetric") if isinstance(op, inception.Pool) and op.kind == "avg" else op


def _body(x, net, depth, variant):
    """The stem, then the inception modules: yields each endpoint."""
    mixed, settings = (inception.restyle(MIXED, _count_padding), TORCH_SETTINGS) if variant == "torchvision" else (
        MIXED, CONV_SETTINGS)
    yield from inception.stem_and_modules(x, STEM, mixed, settings.with_initializer(net.initializer), depth)


def _check_aux_input(shape):
    aux_size = [inception.spatial_size(STEM, MIXED, d, AUX_INPUT) for d in shape[:2]]
    if any(d is not None and d < 5 for d in aux_size):
        raise ValueError(
            f"aux_logits=True needs Mixed_6e to be at least 5x5 (input at least 107x107); "
            f"input_shape={tuple(shape)} gives {aux_size}"
        )


def inception_v3(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, final_endpoint="Mixed_7c",
                 depth_multiplier=1.0, min_depth=16, aux_logits=False, dropout_rate=0.2, variant=None):
    """Instantiates Inception v3 (Szegedy et al., CVPR 2016) with TF-slim's endpoints.

    Args:
      include_top: whether to add the classifier (`AvgPool_1a`, `PreLogits`
        dropout, `Logits`, `Predictions`).
      weights: None (slim's initializers), "imagenet" (keras.applications'
        published file, fetched and hash-checked), the path of a
        keras.applications-layout `.h5`, of a Keras `.weights.h5`/`.keras`
        file written from a kerasnets model, or a TF-slim checkpoint prefix;
        "torchvision" or a PyTorch `.pth`/`.safetensors` state dict in
        torchvision's layout (its AuxLogits load when aux_logits=True).
        A slim checkpoint has 1001 classes (0 = background); with
        `classes=1000` that row is dropped so indices match ImageNet's 1000.
      input_tensor: optional Keras tensor to use as the model's input.
      input_shape: (height, width, channels), at least 75x75; height and
        width may be None. Defaults to (299, 299, 3).
      pooling: None, "avg" or "max": global pooling when include_top=False.
      classes: number of classes of the classifier.
      classifier_activation: activation of `Predictions` (None: logits).
      name: model name (default "InceptionV3", or "InceptionV3_torchvision").
      final_endpoint: truncate the network after this base endpoint, like
        slim's `inception_v3_base` (only with include_top=False).
      depth_multiplier: scales every convolution's filters:
        `max(int(filters * depth_multiplier), min_depth)`.
      min_depth: the minimum number of filters after scaling.
      aux_logits: add slim's auxiliary head on Mixed_6e; the model then
        outputs `[Predictions, AuxLogits]` (AuxLogits are logits).
      dropout_rate: dropout before `Logits` (slim keeps 0.8: rate 0.2).
      variant: None (what the weights are written for), "slim" (also
        keras.applications') or "torchvision" (its batch norms have gamma, its
        average pools count padding).

    Returns:
      A `keras.Model`; `kerasnets.endpoints(model)` lists its endpoints.
    """
    build.check_number("depth_multiplier", depth_multiplier)
    build.check_number("min_depth", min_depth, low=1, low_inclusive=True, integer=True)
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)
    if aux_logits and not include_top:
        raise ValueError("aux_logits=True adds a second classifier and needs include_top=True")

    variant = build.choose_variant("inception_v3", variant, weights, VARIANTS)
    if name is None:
        name = "InceptionV3" + ("_torchvision" if variant == "torchvision" else "")

    def depth(filters):
        return max(int(filters * depth_multiplier), min_depth)

    settings = TORCH_SETTINGS if variant == "torchvision" else CONV_SETTINGS
    side_head = (build.SideHead(AUX_INPUT, functools.partial(_aux_head, depth=depth, settings=settings))
                 if aux_logits else None)
    return build.build_model(
        "inception_v3", functools.partial(_body, depth=depth, variant=variant), include_top=include_top,
        weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, final_endpoint=final_endpoint,
        initializer=CONV_SETTINGS.initializer, head=build.ClassifierHead("AvgPool_1a", (dropout_rate, "PreLogits")),
        side_head=side_head, check_shape=_check_aux_input if aux_logits else None)


def _aux_head(x, net, depth, settings):
    """slim's auxiliary classifier on Mixed_6e (section 4 of the paper); torchvision's is the same."""
    # the aux head keeps its initializers: keras.applications' files do not have it
    x = keras.layers.AveragePooling2D(5, strides=3, padding="valid", name="AuxLogits.AvgPool_1a_5x5")(x)
    x = inception.unit(x, conv(None, 128, 1), "AuxLogits/Conv2d_1b_1x1", settings, depth)
    # slim shrinks the 5x5 kernel when the map is smaller (and names the scope after it).
    kernel = tuple(5 if d is None else min(d, 5) for d in x.shape[1:3])
    x = inception.unit(x, conv(None, 768, kernel, padding="valid"), "AuxLogits/Conv2d_2a_{}x{}".format(*kernel),
                       settings, depth)
    x = keras.layers.Conv2D(net.classes, 1, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.001),
                            name="AuxLogits.Conv2d_2b_1x1")(x)
    # A 1x1 map at the default size (slim squeezes); larger inputs average like global_pool.
    return keras.layers.GlobalAveragePooling2D(dtype="float32", name="AuxLogits")(x)


def preprocess_input(x, data_format=None):
    """Scales RGB pixels in [0, 255] to [-1, 1], as Inception v3 was trained."""
    from kerasnets.layers.preprocessing import preprocess_input as normalise

    return normalise(x, "tf", data_format=data_format)


# keras.applications' file names and MD5s (with the top, without), and its published top-1.
IMAGENET = registry.keras_applications_weights(
    "inception_v3/inception_v3", "9a0d58056eeedaa3f26cb7ebd46da564", "bcbd6486424b2319ff4ef7d526e38f63",
    preprocessing="tf", input_size=DEFAULT_SIZE, top1=77.9)

CONFIG = registry.register(registry.ModelConfig(
    name="inception_v3", builder=inception_v3, family="inception_v3", paper="https://arxiv.org/abs/1512.00567",
    default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=inception.features(STEM, MIXED), params=23_851_784, macs=5_713_216_096,
    preprocessing="tf", weights=(
        IMAGENET,
        # trained with transform_input=True: the input it sees is pixels scaled to [-1, 1]
        registry.torchvision_weights("torchvision", "inception_v3_google-0cc3c7bd.pth", top1=77.294,
                                     input_size=DEFAULT_SIZE, resize_size=342, preprocessing="tf"))))
