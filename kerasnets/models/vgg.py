"""VGG 16 and 19 with TF-slim's endpoints.

Reference:
  Simonyan, Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
  Recognition", ICLR 2015 (https://arxiv.org/abs/1409.1556), table 1,
  configurations D (VGG16) and E (VGG19).

Five blocks of 3x3 convolutions (with biases and ReLU), each closed by a 2x2
max pool; then two fully connected layers of 4096 (`fc6`, `fc7`, dropout 0.5
after each) and the classifier (slim's `fc8`, here `Logits`). Names follow
slim's `nets/vgg.py`: `conv3.conv3_2` is a convolution, the block's last
ReLU carries the endpoint name `conv3`. keras.applications' VGG16/VGG19 are
the same network (`block3_conv2`, `fc1`, `fc2`), so both weight layouts load.

`fully_convolutional=True` is slim's own form: `fc6` is a 7x7 convolution
and `fc7` and the classifier 1x1 convolutions, so a larger input gives a map
of class scores (FCN, Long et al. 2015, starts from it). The weights are the
same numbers either way and load into both forms.
"""

import functools

import keras

from kerasnets import build, registry
from kerasnets.features import FeatureInfo
from kerasnets.layers import blocks, heads

DEFAULT_SIZE = 224
MIN_SIZE = 32
CONV_SETTINGS = blocks.ConvSettings(initializer="glorot_uniform")  # keras.applications' and slim's (xavier)
WIDTHS = (64, 128, 256, 512, 512)
# Table 1: convolutions per block.
CONVS_PER_BLOCK = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
FC_WIDTH = 4096
FC6_KERNEL = 7  # pool5 is 7x7 at 224x224


def _body(x, net, convs_per_block):
    settings = CONV_SETTINGS.with_initializer(net.initializer)
    for block, (count, width) in enumerate(zip(convs_per_block, WIDTHS), start=1):
        for i in range(1, count + 1):
            scope = f"conv{block}.conv{block}_{i}"
            x = blocks.conv(x, width, 3, scope, settings, use_bias=True)
            x = blocks.activation(x, f"conv{block}" if i == count else f"{scope}.Relu", settings)
        yield f"conv{block}", x
        x = blocks.pool(x, "max", 2, f"pool{block}", strides=2)
        yield f"pool{block}", x


def _features():
    found, reduction = [], 1
    for block, width in enumerate(WIDTHS, start=1):
        found.append(FeatureInfo(f"conv{block}", width, reduction))
        reduction *= 2
        found.append(FeatureInfo(f"pool{block}", width, reduction))
    return tuple(found)


def _classifier(x, net, dropout_rate, fully_convolutional, fc_conv_padding):
    """fc6, fc7 (ReLU, then dropout) and the classifier: dense layers, or slim's convolutions."""
    init = net.initializer
    if fully_convolutional:
        for name, kernel, padding in (("fc6", FC6_KERNEL, fc_conv_padding), ("fc7", 1, "same")):
            x = keras.layers.Conv2D(FC_WIDTH, kernel, padding=padding,
                                    kernel_initializer=blocks.fresh_initializer(init), name=f"{name}.Conv2D")(x)
            x = keras.layers.Activation("relu", name=name)(x)
            x = keras.layers.Dropout(dropout_rate, name=f"{name}.Dropout")(x)
        x = keras.layers.Conv2D(net.classes, 1, kernel_initializer=blocks.fresh_initializer(init), name="Logits")(x)
        return heads.predictions(x, net.classifier_activation)
    x = keras.layers.Flatten(name="fc6.Flatten")(x)
    for name in ("fc6", "fc7"):
        x = keras.layers.Dense(FC_WIDTH, activation="relu", kernel_initializer=blocks.fresh_initializer(init),
                               name=name)(x)
        x = keras.layers.Dropout(dropout_rate, name=f"{name}.Dropout")(x)
    x = keras.layers.Dense(net.classes, kernel_initializer=blocks.fresh_initializer(init), name="Logits")(x)
    return heads.predictions(x, net.classifier_activation)


def _check_head_input(shape, include_top, fully_convolutional, fc_conv_padding):
    if not include_top:
        return
    if not fully_convolutional and None in shape[:2]:
        raise ValueError(f"VGG's fully connected head needs a fixed input size (it flattens pool5); got "
                         f"input_shape={tuple(shape)}. Pass include_top=False, or fully_convolutional=True for "
                         "a map of class scores on inputs of any size.")
    small = [d for d in shape[:2] if d is not None and d < 32 * FC6_KERNEL]
    if fully_convolutional and fc_conv_padding == "valid" and small:
        raise ValueError(f"fully_convolutional=True with fc_conv_padding='valid' needs inputs of at least "
                         f"{32 * FC6_KERNEL}x{32 * FC6_KERNEL} (fc6 is a 7x7 convolution on pool5); got "
                         f"input_shape={tuple(shape)}. Use fc_conv_padding='same' for smaller inputs.")


def _vgg(model_name, include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name,
         final_endpoint, dropout_rate, fully_convolutional, fc_conv_padding):
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)
    build.check_flag("fully_convolutional", fully_convolutional)
    if fc_conv_padding not in ("valid", "same"):
        raise ValueError(f"fc_conv_padding must be 'valid' or 'same', got fc_conv_padding={fc_conv_padding!r}")
    head = functools.partial(_classifier, dropout_rate=dropout_rate, fully_convolutional=fully_convolutional,
                             fc_conv_padding=fc_conv_padding)
    return build.build_model(
        model_name, functools.partial(_body, convs_per_block=CONVS_PER_BLOCK[model_name]), include_top=include_top,
        weights=weights, input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name, final_endpoint=final_endpoint,
        initializer=CONV_SETTINGS.initializer, head=head,
        check_shape=functools.partial(_check_head_input, include_top=include_top,
                                      fully_convolutional=fully_convolutional, fc_conv_padding=fc_conv_padding))


_ARGS_DOC = """
    Args:
      include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name: as keras.applications (input at least
        32x32, default 224x224x3). `weights`: None, "imagenet"
        (keras.applications' published file, fetched and hash-checked; its
        input is "caffe"-preprocessed, BGR), "imagenet_slim" (slim's
        checkpoint, 1000 classes; its input has ImageNet's RGB mean
        subtracted: `preprocess_input(x, model=..., weights="imagenet_slim")`),
        a keras.applications-layout `.h5`, a TF-slim checkpoint prefix
        (`vgg_16.ckpt`) or a Keras `.weights.h5`/`.keras` file.
      final_endpoint: truncate after this endpoint (`conv1` ... `pool5`; only
        with include_top=False).
      dropout_rate: dropout after `fc6` and `fc7` (the paper's 0.5).
      fully_convolutional: slim's head: `fc6` a 7x7 convolution, `fc7` and
        `Logits` 1x1 convolutions; the output is a map of class scores
        (1x1 at 224x224).
      fc_conv_padding: padding of the 7x7 `fc6` convolution ("valid", as
        slim: the map is input/32 - 6 wide; "same": input/32).
    """


def vgg16(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax", name="VGG16", final_endpoint="pool5", dropout_rate=0.5,
          fully_convolutional=False, fc_conv_padding="valid"):
    return _vgg("vgg16", include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation,
                name, final_endpoint, dropout_rate, fully_convolutional, fc_conv_padding)


def vgg19(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
          classifier_activation="softmax", name="VGG19", final_endpoint="pool5", dropout_rate=0.5,
          fully_convolutional=False, fc_conv_padding="valid"):
    return _vgg("vgg19", include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation,
                name, final_endpoint, dropout_rate, fully_convolutional, fc_conv_padding)


vgg16.__doc__ = "Instantiates VGG16 (Simonyan & Zisserman, ICLR 2015; configuration D) with slim's endpoints.\n" + \
    _ARGS_DOC
vgg19.__doc__ = "Instantiates VGG19 (Simonyan & Zisserman, ICLR 2015; configuration E) with slim's endpoints.\n" + \
    _ARGS_DOC

# (registered name, builder, keras.applications' MD5s with and without the top, params, MACs, published top-1,
#  slim's checkpoint and its top-1)
_VARIANTS = (
    ("vgg16", vgg16, "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc", 138_357_544,
     15_470_264_320, 71.3, "vgg_16", 71.5),
    ("vgg19", vgg19, "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6", 143_667_240,
     19_632_062_464, 71.3, "vgg_19", 71.1),
)
TORCHVISION = {"vgg16": ("vgg16-397923af.pth", 71.592), "vgg19": ("vgg19-dcbb9e9d.pth", 72.376)}
for _name, _builder, _top_md5, _notop_md5, _params, _macs, _top1, _slim, _slim_top1 in _VARIANTS:
    registry.register(registry.ModelConfig(
        name=_name, builder=_builder, family="vgg", paper="https://arxiv.org/abs/1409.1556",
        default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=_features(),
        params=_params, macs=_macs, preprocessing="caffe",
        weights=(registry.keras_applications_weights(
            f"vgg{_name[3:]}/{_name}", _top_md5, _notop_md5, preprocessing="caffe", input_size=DEFAULT_SIZE,
            top1=_top1),
            # slim's VGG: 1000 classes (no background) and its own preprocessing, ImageNet's mean in RGB order
            registry.slim_weights(f"{_slim}_2016_08_28.tar.gz", f"{_slim}.ckpt", input_size=DEFAULT_SIZE,
                                  top1=_slim_top1, tag="imagenet_slim", classes=1000, preprocessing="rgb_mean"),
            # torchvision's (acc@1 of its weights enum), ImageNet mean/std
            registry.torchvision_weights("torchvision", TORCHVISION[_name][0], top1=TORCHVISION[_name][1]))))
