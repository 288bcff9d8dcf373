"""MobileNet v1 with TF-slim's endpoints.

Reference:
  Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam,
  "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications", 2017 (https://arxiv.org/abs/1704.04861), table 1.

A full 3x3 convolution (`Conv2d_0`), then thirteen depthwise separable
convolutions, each a 3x3 depthwise convolution (`Conv2d_<i>_depthwise`) and
a 1x1 pointwise one (`Conv2d_<i>_pointwise`), every one followed by batch
norm (with gamma) and ReLU6, as slim's `nets/mobilenet_v1.py` and
keras.applications' MobileNet build it (same layers, so both weight layouts
load; padding is slim's "same", so at inputs that are not multiples of 32
keras.applications' explicit padding gives some grids one cell less).
`alpha` is the paper's width multiplier (slim calls it `depth_multiplier`);
`depth_multiplier` is keras.applications' depthwise channel multiplier.
`output_stride` 8 or 16 keeps the grid finer by running the later depthwise
convolutions atrous, as slim does for dense prediction.
"""

import functools

from kerasnets import build, registry
from kerasnets.features import FeatureInfo
from kerasnets.layers import blocks

DEFAULT_SIZE = 224
MIN_SIZE = 32
MIN_DEPTH = 8  # slim's min_depth; the published alphas never reach it, so keras.applications' widths agree
# slim's mobilenet_v1_arg_scope: batch norm with gamma (epsilon 0.001), ReLU6. Kernels start Glorot-uniform, as
# keras.applications' (slim draws a truncated normal of stddev 0.09).
CONV_SETTINGS = blocks.ConvSettings(initializer="glorot_uniform", batch_norm_epsilon=0.001, batch_norm_momentum=0.99,
                                    batch_norm_scale=True, activation="relu6")
# Table 1: the first convolution, then (stride, filters) of each depthwise separable convolution.
FIRST_CONV = ("Conv2d_0", 2, 32)
SEPARABLE = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
             (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024))
ALPHAS = {"mobilenet_v1_100": 1.0, "mobilenet_v1_075": 0.75, "mobilenet_v1_050": 0.5, "mobilenet_v1_025": 0.25}


def _depth(filters, alpha):
    return max(int(filters * alpha), MIN_DEPTH)


def _body(x, net, alpha, depth_multiplier, output_stride):
    settings = CONV_SETTINGS.with_initializer(net.initializer)
    name, stride, filters = FIRST_CONV
    x = blocks.conv_norm_act(x, _depth(filters, alpha), 3, name, settings, strides=stride, conv_name=f"{name}.Conv2D",
                             output_name=name)
    yield name, x
    schedule, _ = blocks.atrous_schedule(stride, [s for s, _ in SEPARABLE], output_stride)
    for i, ((_, filters), (stride, dilation)) in enumerate(zip(SEPARABLE, schedule), start=1):
        scope = f"Conv2d_{i}_depthwise"
        x = blocks.depthwise_conv(x, 3, f"{scope}.Conv2D", settings, strides=stride, dilation_rate=dilation,
                                  depth_multiplier=depth_multiplier)
        x = blocks.activation(blocks.batch_norm(x, f"{scope}.BatchNorm", settings), scope, settings)
        yield scope, x
        scope = f"Conv2d_{i}_pointwise"
        x = blocks.conv_norm_act(x, _depth(filters, alpha), 1, scope, settings, conv_name=f"{scope}.Conv2D",
                                 output_name=scope)
        yield scope, x


def _features(alpha):
    found = [FeatureInfo(FIRST_CONV[0], _depth(FIRST_CONV[2], alpha), FIRST_CONV[1])]
    reduction, channels = FIRST_CONV[1], found[0].channels
    for i, (stride, filters) in enumerate(SEPARABLE, start=1):
        reduction *= stride
        found.append(FeatureInfo(f"Conv2d_{i}_depthwise", channels, reduction))
        channels = _depth(filters, alpha)
        found.append(FeatureInfo(f"Conv2d_{i}_pointwise", channels, reduction))
    return tuple(found)


def mobilenet_v1(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
                 classifier_activation="softmax", name=None, alpha=1.0, depth_multiplier=1, dropout_rate=1e-3,
                 final_endpoint=None, output_stride=None):
    """Instantiates MobileNet v1 (Howard et al. 2017) with TF-slim's endpoints.

    Args:
      include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation: as keras.applications' MobileNet (input at
        least 32x32, default 224x224x3). `weights`: None, "imagenet"
        (keras.applications' published file for this alpha, trained at the
        input size if it is square and one of 128, 160, 192, 224, else at
        224x224 with a warning), "imagenet_slim" (slim's checkpoint, chosen
        the same way), a keras.applications-layout `.h5`, a TF-slim checkpoint prefix
        (`mobilenet_v1_1.0_224.ckpt`: 1001 classes, or 1000 with its
        background class dropped) or a Keras `.weights.h5`/`.keras` file.
      name: model name (default `MobileNetV1_<alpha>`).
      alpha: width multiplier: every layer has `max(int(filters * alpha), 8)`
        filters. Published weights exist for 1.0, 0.75, 0.5 and 0.25
        (registered as `mobilenet_v1_100`, `_075`, `_050`, `_025`).
      depth_multiplier: channels per input channel of each depthwise
        convolution (keras.applications' meaning; 1 for published weights).
      dropout_rate: dropout before `Logits` (slim keeps 0.999: 0.001).
      final_endpoint: truncate after this endpoint (only with
        include_top=False).
      output_stride: None (32), 16 or 8: the coarsest grid; later depthwise
        convolutions stride 1 and dilate instead (atrous), as slim's.
    """
    build.check_number("alpha", alpha)
    build.check_number("depth_multiplier", depth_multiplier, integer=True)
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)
    if output_stride not in (None, 8, 16, 32):
        raise ValueError(f"output_stride must be None, 8, 16 or 32, got output_stride={output_stride!r}")
    model_name = next((n for n, a in ALPHAS.items() if a == alpha), None)
    published = isinstance(weights, str) and weights in CONFIGS["mobilenet_v1_100"].weight_tags
    if model_name is None and published:
        raise ValueError(f"weights={weights!r} are published for alpha in {sorted(ALPHAS.values())}; got "
                         f"alpha={alpha}. Use weights=None for other widths.")
    if depth_multiplier != 1 and published:
        raise ValueError(f"weights={weights!r} are published for depth_multiplier=1; got "
                         f"depth_multiplier={depth_multiplier}")
    return build.build_model(
        model_name or "mobilenet_v1_100",
        functools.partial(_body, alpha=alpha, depth_multiplier=depth_multiplier, output_stride=output_stride),
        include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        name=name or f"MobileNetV1_{alpha:g}", final_endpoint=final_endpoint, initializer=CONV_SETTINGS.initializer,
        head=build.ClassifierHead("AvgPool_1a", (dropout_rate, "Dropout_1b")))


def _variant(name, alpha):
    def builder(**kwargs):
        return mobilenet_v1(alpha=alpha, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"`mobilenet_v1(alpha={alpha}, ...)`: MobileNet v1 at width {alpha} (see `mobilenet_v1`)."
    return builder


mobilenet_v1_100, mobilenet_v1_075, mobilenet_v1_050, mobilenet_v1_025 = BUILDERS = tuple(
    _variant(name, alpha) for name, alpha in ALPHAS.items())

KERAS_APPLICATIONS_ROOT = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
# name -> (keras.applications' alpha in its file names, params and MACs at 224x224 with the classifier)
PUBLISHED = {"mobilenet_v1_100": ("1_0", 4_253_864, 568_740_352), "mobilenet_v1_075": ("7_5", 2_601_976, 325_400_448),
             "mobilenet_v1_050": ("5_0", 1_342_536, 149_497_088), "mobilenet_v1_025": ("2_5", 475_544, 41_030_272)}


# keras.applications and slim publish a set per alpha with one file for each of these square input sizes.
PUBLISHED_SIZES = (128, 160, 192, 224)


def _imagenet(name):
    """keras.applications' files (`mobilenet_<alpha>_<size>_tf[_no_top].h5`; keras publishes no hash for them)."""
    stem = f"{KERAS_APPLICATIONS_ROOT}mobilenet_{PUBLISHED[name][0]}"
    return registry.PretrainedWeights(
        tag="imagenet", layout="keras_applications", preprocessing="tf", input_size=DEFAULT_SIZE,
        files=tuple(registry.WeightsFile(f"{stem}_{size}_tf{suffix}.h5", None, include_top=top, input_size=size)
                    for size in PUBLISHED_SIZES for top, suffix in ((True, ""), (False, "_no_top"))),
        top1=70.4 if ALPHAS[name] == 1.0 else None, top1_source=registry.KERAS_APPLICATIONS_TABLE)


# slim's float checkpoints at 224x224 (research/slim/nets/mobilenet_v1.md) and their top-1.
SLIM_TOP1 = {"mobilenet_v1_100": 70.9, "mobilenet_v1_075": 68.4, "mobilenet_v1_050": 63.3, "mobilenet_v1_025": 49.8}


def _slim(name):
    stem = f"mobilenet_v1_{ALPHAS[name]}_{{size}}"  # str(0.5) == "0.5", str(1.0) == "1.0", as slim names them
    return registry.slim_weights(f"mobilenet_v1_2018_08_02/{stem}.tgz", f"{stem}.ckpt", input_size=DEFAULT_SIZE,
                                 top1=SLIM_TOP1[name], tag="imagenet_slim", sizes=PUBLISHED_SIZES)


CONFIGS = {name: registry.register(registry.ModelConfig(
    name=name, builder=builder, family="mobilenet_v1", paper="https://arxiv.org/abs/1704.04861",
    default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=_features(ALPHAS[name]), params=PUBLISHED[name][1],
    macs=PUBLISHED[name][2], preprocessing="tf", weights=(_imagenet(name), _slim(name))))
    for name, builder in zip(ALPHAS, BUILDERS)}
