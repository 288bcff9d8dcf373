"""Network in Network.

Reference:
  Lin, Chen, Yan, "Network In Network", ICLR 2014 (https://arxiv.org/abs/1312.4400).

An mlpconv block is a spatial convolution followed by two 1x1 convolutions
("cascaded cross channel parametric pooling", cccp), each with a ReLU. The
last block's last 1x1 convolution produces one map per class, which global
average pooling turns into the logits: no fully connected layer. Layer names
follow the authors' released Caffe models: `mlpconv1.conv`, `mlpconv1.cccp1`,
`mlpconv1.cccp2`, `pool1`, ...; each block's output is the endpoint
`mlpconv1` ... `mlpconvN` (pooling outputs `pool1` ... are endpoints too).
Without the top, the class-map layer is left out, so the last endpoint is
that block's second layer. Pooling uses TF's "same" padding, which gives
Caffe's (ceil-mode) sizes on 32x32 CIFAR images.

Initialisation (why NIN trains here): the ReLU on the class maps makes "all
maps negative" an absorbing state -- every wrong class's map is pushed down,
and a map that is negative everywhere gets no gradient back. With Keras'
default (Glorot-uniform kernels, zero biases) NIN's class maps all died within
the first epoch on scikit-learn's digits and it stayed at chance (loss ln 10),
even without augmentation; Glorot's variance also halves the signal through
each of the nine ReLU layers. The authors' released models started from
hand-tuned Gaussians; here the scales follow a rule instead: kernels are He-normal (He et al. 2015, variance 2/fan-in,
which keeps the signal's scale through ReLUs), and the class-map layer starts
with small weights (std 0.01, the released ImageNet model's) and a bias of 1,
so every map starts in the ReLU's active range (Krizhevsky et al. 2012 gave
ReLU layers a bias of 1 "to accelerate the early stages of learning").
Measured on digits, 8 epochs of the default recipe without augmentation:
accuracy 0.33 with Keras' default, 0.99 with this.
"""

import functools

import keras

from kerasnets import build, registry
from kerasnets.features import FeatureInfo
from kerasnets.layers import heads

# Per block: (spatial kernel, stride, filters, cccp filters, cccp filters) -- the paper's
# released models; None stands for the number of classes. Then the pooling after the block.
VARIANTS = {
    # CIFAR-10 model (89.6 % reported): max pool, then average pool, each followed by dropout.
    "cifar": dict(
        blocks=((5, 1, 192, 160, 96), (5, 1, 192, 192, 192), (3, 1, 192, 192, None)),
        pools=(("max", True), ("avg", True)),
        default_size=32, min_size=8, classes=10, params=966_986, macs=222_486_528),
    # ImageNet model: 3x3/2 max pooling between blocks, dropout before the last block.
    "imagenet": dict(
        blocks=((11, 4, 96, 96, 96), (5, 1, 256, 256, 256), (3, 1, 384, 384, 384), (3, 1, 1024, 1024, None)),
        pools=(("max", False), ("max", False), ("max", True)),
        default_size=224, min_size=32, classes=1000, params=7_595_176, macs=1_204_989_056),
}
REGISTERED = {"nin": "cifar", "nin_imagenet": "imagenet"}
NAMES = {variant: name for name, variant in REGISTERED.items()}


def _conv(x, filters, kernel, strides, scope, output_name, batch_norm, class_maps=False):
    padding = "valid" if strides > 1 else "same"  # the 11x11/4 layer is unpadded, the others keep size
    # See the module docstring: the class maps start small and inside the ReLU's active range.
    kernel_init = keras.initializers.RandomNormal(stddev=0.01) if class_maps else "he_normal"
    shift_init = "ones" if class_maps else "zeros"
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=not batch_norm,
                            kernel_initializer=kernel_init, bias_initializer=shift_init, name=scope)(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(beta_initializer=shift_init, name=f"{scope}.BatchNorm")(x)
    return keras.layers.Activation("relu", name=output_name or f"{scope}.Relu")(x)


def _body(x, net, spec, dropout_rate, batch_norm):
    for number, (kernel, strides, *filters) in enumerate(spec["blocks"], start=1):
        block = f"mlpconv{number}"
        layers = [(f"{block}.conv", filters[0], kernel, strides, False),
                  (f"{block}.cccp{2 * number - 1}", filters[1], 1, 1, False)]
        if filters[2] is not None:
            layers.append((f"{block}.cccp{2 * number}", filters[2], 1, 1, False))
        elif net.include_top:  # the last layer makes the class maps: it is the classifier
            layers.append((f"{block}.cccp{2 * number}", net.classes, 1, 1, True))
        for i, (scope, f, k, s, class_maps) in enumerate(layers):
            x = _conv(x, f, k, s, scope, block if i == len(layers) - 1 else None, batch_norm, class_maps)
        yield block, x
        if number <= len(spec["pools"]):
            kind, dropout = spec["pools"][number - 1]
            pool = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
            x = pool(3, strides=2, padding="same", name=f"pool{number}")(x)
            yield f"pool{number}", x
            if dropout:
                x = keras.layers.Dropout(dropout_rate, name=f"pool{number}.Dropout")(x)


def _class_map_head(x, net):
    """The class maps (the body's last layer) averaged: NIN has no fully connected layer."""
    x = keras.layers.GlobalAveragePooling2D(name="Logits")(x)
    return heads.predictions(x, net.classifier_activation)


def nin(variant="cifar", include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
        classes=None, classifier_activation="softmax", dropout_rate=0.5, batch_norm=False, name="NIN",
        final_endpoint=None):
    """Instantiates Network in Network (Lin, Chen & Yan, ICLR 2014).

    Args:
      variant: "cifar" (3 mlpconv blocks, 32x32 input) or "imagenet" (4
        blocks, 224x224).
      include_top, weights, input_tensor, input_shape, pooling,
        classifier_activation, name: as in keras.applications; weights are
        None or a Keras `.weights.h5`/`.keras` file (none are published).
      classes: defaults to 10 (cifar) or 1000 (imagenet).
      dropout_rate: dropout after the pooling layers the paper puts it on.
      batch_norm: add BatchNorm after every convolution (the common modern
        variant, not in the paper).
      final_endpoint: truncate after this endpoint (`mlpconv1`, `pool1`, ...;
        with include_top=False).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got variant={variant!r}")
    spec = VARIANTS[variant]
    classes = spec["classes"] if classes is None else classes
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)
    build.check_flag("batch_norm", batch_norm)
    return build.build_model(
        NAMES[variant], functools.partial(_body, spec=spec, dropout_rate=dropout_rate, batch_norm=batch_norm),
        include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
        final_endpoint=final_endpoint, head=_class_map_head)


def _features(spec):
    features, reduction = [], 1
    for number, (kernel, strides, *filters) in enumerate(spec["blocks"], start=1):
        reduction *= strides
        features.append(FeatureInfo(f"mlpconv{number}", filters[2] or filters[1], reduction))  # without the top
        if number <= len(spec["pools"]):
            reduction *= 2
            features.append(FeatureInfo(f"pool{number}", filters[2], reduction))
    return tuple(features)


CONFIGS = {variant: registry.register(registry.ModelConfig(
    name=name, builder=functools.partial(nin, variant), family="nin", paper="https://arxiv.org/abs/1312.4400",
    default_size=VARIANTS[variant]["default_size"], min_size=VARIANTS[variant]["min_size"],
    features=_features(VARIANTS[variant]), params=VARIANTS[variant]["params"], macs=VARIANTS[variant]["macs"],
    classes=VARIANTS[variant]["classes"], preprocessing="tf")) for name, variant in REGISTERED.items()}
