"""Dense prediction on any registered backbone: FCN, U-Net and DeepLab v3.

References:
  Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
  Segmentation", CVPR 2015 (https://arxiv.org/abs/1411.4038): FCN-32s/16s/8s.
  Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical
  Image Segmentation", MICCAI 2015 (https://arxiv.org/abs/1505.04597).
  Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic
  Image Segmentation", 2017 (https://arxiv.org/abs/1706.05587): DeepLab v3.

Each head taps its backbone through `feature_extractor(reductions=...)`: the
deepest endpoint at each reduction the head needs. The backbone is a
registered name (built here with `backbone_weights`, at any channel count) or
a built kerasnets model. The output is per-pixel class scores at the input's
resolution, so the input's sides must be multiples of the coarsest reduction
the head taps (checked before anything is built where the size is known).

Pretrained backbones at another channel count (grayscale, multispectral):
the first convolution's kernel is adapted as timm's `adapt_input_conv` does
(summed over RGB for one channel; RGB repeated and scaled by 3/C for C
channels), every other weight is the backbone's own.

By name (`HEADS`, `create_head`): fcn8s, fcn16s, fcn32s, unet, deeplab_v3, as
`kerasnets train HEAD --backbone NAME` trains them (`kerasnets.training`).
They are registered models too (task "segmentation"): `kerasnets list` and
`summary`, `create_model("unet", backbone="mobilenet_v1_100", classes=11)`,
and `weights=` a Keras file of the whole segmenter (`backbone_weights` for the
backbone's own).
"""

import inspect

import numpy as np

import keras

from kerasnets import build, features, registry
from kerasnets import weights as weights_lib
from kerasnets.features import FeatureInfo
from kerasnets.layers import blocks
from kerasnets.model import functional

HEAD_SETTINGS = blocks.ConvSettings(initializer="he_normal", batch_norm_epsilon=1e-5)
FCN_SKIPS = (8, 16, 32)
UNET_DECODER_FILTERS = (256, 128, 64, 32, 16)
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}  # Chen et al. 2017, section 3.3: doubled at output stride 8
ASPP_FILTERS = 256
# Backbone families with slim's `output_stride` (later layers atrous) and the strides DeepLab passes them;
# Inception-ResNet v2 is at 16 by default (its PreAuxLogits).
ATROUS_BACKBONES = {"resnet": (8, 16), "xception": (8, 16), "mobilenet_v1": (8, 16), "inception_resnet_v2": (8,)}


# ---- the backbone ---------------------------------------------------------------------------------------------


def _check_shape(input_shape, multiple, head, backbone):
    """Sides must be multiples of `multiple`; a built backbone's own input is checked when no input_shape is
    given."""
    backbone_name = getattr(backbone, "name", backbone)
    if input_shape is None and isinstance(backbone, keras.Model):
        input_shape = tuple(backbone.input.shape[1:])
    if input_shape is None:
        return
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(f"input_shape must be (height, width, channels) with known channels, got "
                         f"input_shape={tuple(input_shape)}")
    for side in input_shape[:2]:
        if side is not None and side % multiple:
            nearest = tuple(max(multiple, round(s / multiple) * multiple) if s is not None else None
                            for s in input_shape[:2])
            raise ValueError(f"input_shape={tuple(input_shape)}: {head} on {backbone_name} needs sides that are "
                             f"multiples of {multiple}; the nearest valid input is {nearest + (input_shape[2],)}")


def _input_shape(input_shape, input_tensor):
    """(height, width, channels) of `input_tensor` when given, else `input_shape` (None: not known yet)."""
    if input_tensor is not None:
        return tuple(input_tensor.shape[1:])
    return None if input_shape is None else tuple(input_shape)


def _adapt_first_kernel(kernel, channels):
    """An RGB first-layer kernel (kh, kw, 3, out) for `channels` inputs (timm's adapt_input_conv)."""
    if channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    repeats = -(-channels // kernel.shape[2])
    return np.tile(kernel, (1, 1, repeats, 1))[:, :, :channels] * (kernel.shape[2] / channels)


def build_backbone(backbone, backbone_weights=None, input_shape=None, input_tensor=None, **backbone_args):
    """The backbone without its classifier: a registered name built with `backbone_weights` (any weights argument
    it takes) at `input_shape` or on `input_tensor` (any channel count: pretrained RGB weights have their first
    convolution adapted), or a built kerasnets model, returned as it is."""
    if isinstance(backbone, keras.Model):
        if backbone_weights is not None or backbone_args or input_tensor is not None:
            raise ValueError("backbone is a built model: load its weights and set its options when building it "
                             "(backbone_weights and backbone options apply to a backbone given by name)")
        return backbone
    if not isinstance(backbone, str):
        raise TypeError(f"backbone must be a registered model name or a keras.Model, got backbone={backbone!r}")
    config = registry.get_config(backbone)
    build.check_weights_argument(backbone_weights, config)
    shape = _input_shape(input_shape, input_tensor) or (None, None, 3)
    channels = shape[2]
    place = dict(input_shape=shape) if input_tensor is None else dict(input_tensor=input_tensor)
    if backbone_weights is None or channels == 3:
        return config.builder(include_top=False, weights=backbone_weights, **place, **backbone_args)
    model = config.builder(include_top=False, weights=None, **place, **backbone_args)
    first = next(layer for layer in model.layers if layer.weights)
    if type(first) is not keras.layers.Conv2D:
        raise ValueError(f"backbone={backbone!r} starts with a {type(first).__name__}; pretrained weights can be "
                         f"adapted to {channels} input channels only where the first layer is a Conv2D. Use "
                         "backbone_weights=None, or 3 channels.")
    rgb = config.builder(include_top=False, weights=backbone_weights, input_shape=shape[:2] + (3,), **backbone_args)
    for layer in model.layers:
        values = rgb.get_layer(layer.name).get_weights()
        if layer is first:
            values = [_adapt_first_kernel(values[0], channels)] + values[1:]
        layer.set_weights(values)
    return model


def _taps(backbone, reductions):
    """{reduction: feature map} of the deepest endpoint at each reduction; a clear error where the backbone's
    valid padding makes a map other than input / reduction (the Inception stems: use align_feature_maps)."""
    taps = features.feature_extractor(backbone, reductions=reductions).output
    found = dict(zip(reductions, taps.values()))
    size = backbone.input.shape[1:3]
    for reduction, (endpoint, tensor) in zip(reductions, taps.items()):
        expected = tuple(None if s is None else s // reduction for s in size)
        if None not in expected and tuple(tensor.shape[1:3]) != expected:
            raise ValueError(f"backbone {backbone.name!r}: endpoint {endpoint!r} is {tuple(tensor.shape[1:3])} "
                             f"for a {tuple(size)} input, not input / {reduction} = {expected} (valid padding); "
                             "build the backbone with align_feature_maps=True where it has that option "
                             "(Inception-ResNet v2), or use a head that taps only reductions 8-32 (fcn, deeplab_v3)")
    return found


def _output(x, activation):
    """Per-pixel scores in float32 (under mixed precision too), as the classifiers' `Predictions`."""
    return keras.layers.Activation(activation or "linear", dtype="float32", name="Predictions")(x)


def _freeze(backbone, freeze):
    if freeze:
        backbone.trainable = False


def _check_common(classes, freeze_backbone):
    """The arguments every head takes, checked before anything is built."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got classes={classes!r}")
    build.check_flag("freeze_backbone", freeze_backbone)


# ---- FCN --------------------------------------------------------------------------------------------------------


def bilinear_kernel(factor, channels):
    """A Conv2DTranspose kernel (k, k, channels, channels) that upsamples each channel by `factor` bilinearly
    (FCN's initialisation: k = 2 * factor - factor % 2; with "same" padding, tf.image.resize's half-pixel
    bilinear away from the border)."""
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 else factor - 0.5
    taps = 1 - np.abs(np.arange(size) - center) / factor
    kernel = np.zeros((size, size, channels, channels), "float32")
    for c in range(channels):
        kernel[:, :, c, c] = np.outer(taps, taps)
    return kernel


def _upsample(x, factor, classes, name):
    # The bilinear start is assigned, not given as the layer's initializer: a Constant initializer writes its
    # whole value into the model's config (FCN-32s' 64x64x21x21 kernel: a 10 MB config.json in every .keras
    # file). A model rebuilt from its config alone (clone_model without weights) starts from Keras' default.
    kernel = bilinear_kernel(factor, classes)
    layer = keras.layers.Conv2DTranspose(classes, kernel.shape[0], strides=factor, padding="same", use_bias=False,
                                         name=name)
    upsampled = layer(x)
    layer.kernel.assign(kernel)
    return upsampled


def fcn(backbone="vgg16", skips=8, classes=21, backbone_weights=None, input_shape=None, input_tensor=None,
        freeze_backbone=False, classifier_activation="softmax", name=None, **backbone_args):
    """FCN-32s, -16s or -8s (Long et al. 2015) on `backbone`.

    A 1x1 score layer on the backbone's reduction-32 features, upsampled 2x by
    learnable transposed convolutions initialised bilinear and summed with
    scores of the reduction-16 (FCN-16s) and reduction-8 (FCN-8s) features,
    then upsampled to the input (8x, 16x or 32x), also initialised bilinear.
    The skips tap the deepest endpoint at each reduction: on VGG, `conv5` and
    `conv4` where the paper scores `pool4` and `pool3` (the same grids).

    Args:
      backbone: a registered name or a built kerasnets model (include_top=False).
      skips: 8, 16 or 32: the finest reduction scored (FCN-8s, -16s, -32s).
      classes: classes per pixel (21: PASCAL VOC with background).
      backbone_weights: any `weights` the backbone takes (None: random).
      input_shape: (height, width, channels); sides multiples of 32, or None.
      input_tensor: a Keras tensor to build on instead (e.g. a normalisation
        layer's output); the model's input is then that tensor's source.
      freeze_backbone: keep the backbone's weights (and batch norms) fixed.
      classifier_activation: "softmax", None (logits) or any activation.
      **backbone_args: options of the backbone's builder.
    """
    if skips not in FCN_SKIPS:
        raise ValueError(f"skips must be one of {FCN_SKIPS} (FCN-8s, -16s, -32s), got skips={skips!r}")
    _check_common(classes, freeze_backbone)
    _check_shape(_input_shape(input_shape, input_tensor), 32, "fcn", backbone)
    net = build_backbone(backbone, backbone_weights, input_shape, input_tensor, **backbone_args)
    _freeze(net, freeze_backbone)
    reductions = tuple(r for r in FCN_SKIPS if r >= skips)
    taps = _taps(net, reductions)
    settings = HEAD_SETTINGS
    x = blocks.conv(taps[32], classes, 1, "score_fr", settings, use_bias=True)
    for reduction in (16, 8):
        if reduction < skips:
            break
        x = _upsample(x, 2, classes, f"upscore{reduction}")
        score = keras.layers.Conv2D(classes, 1, kernel_initializer="zeros", name=f"score_{reduction}")(
            taps[reduction])  # zero-initialised, as the paper's skips, so training starts from the coarser net
        x = keras.layers.Add(name=f"fuse_{reduction}")([x, score])
    x = _upsample(x, skips, classes, "upscore")
    outputs = _output(x, classifier_activation)
    return functional(net.input, outputs, name=name or f"fcn{skips}s_{net.name}")


# ---- U-Net ------------------------------------------------------------------------------------------------------


def unet(backbone="resnet18", classes=21, decoder_filters=UNET_DECODER_FILTERS, coarse_scores=True,
         backbone_weights=None, input_shape=None, input_tensor=None, freeze_backbone=False,
         classifier_activation="softmax", name=None, **backbone_args):
    """U-Net (Ronneberger et al. 2015) with `backbone` as its encoder.

    The decoder climbs from the reduction-32 features in five stages: each
    upsamples 2x, concatenates the encoder's features at that reduction
    (16, 8, 4, 2; where the backbone has them) and applies two 3x3
    convolutions with batch norm and ReLU (`decoder_filters` channels);
    a 1x1 convolution then scores each pixel (`Logits`).

    With `coarse_scores` (the default), 1x1 scores of the reduction-8 stage,
    upsampled 8x by a transposed convolution initialised bilinear (FCN-8s'
    last step), are added to those full-resolution scores, which start at
    zero: training starts from the coarse network, which learns which class a
    region is, and the fine stages add the outline. Without it (the paper's
    decoder alone) a ResNet-18 U-Net learned the 11-class digits-on-photos set
    far slower (test mean IoU 0.125 against 0.335 at the same 750 steps;
    benchmarks/BENCHMARKS.md).

    Args: as `fcn`, plus `decoder_filters`: five channel counts, coarse to
      fine; `coarse_scores`: add the upsampled reduction-8 scores (False: the
      paper's U-Net).
    """
    _check_common(classes, freeze_backbone)
    if len(decoder_filters) != 5 or any(isinstance(f, bool) or not isinstance(f, int) or f < 1
                                        for f in decoder_filters):
        raise ValueError(f"decoder_filters must be five positive integers (one per 2x upsampling from reduction 32), "
                         f"got decoder_filters={decoder_filters!r}")
    build.check_flag("coarse_scores", coarse_scores)
    _check_shape(_input_shape(input_shape, input_tensor), 32, "unet", backbone)
    net = build_backbone(backbone, backbone_weights, input_shape, input_tensor, **backbone_args)
    _freeze(net, freeze_backbone)
    available = {r for r in features.reductions(net).values() if r is not None}
    skip_reductions = tuple(r for r in (16, 8, 4, 2) if r in available)
    taps = _taps(net, (32,) + skip_reductions)
    settings = HEAD_SETTINGS
    x, coarse = taps[32], None
    for stage, filters in enumerate(decoder_filters, start=1):
        reduction = 32 >> stage
        scope = f"decoder.stage{stage}"
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{scope}.Upsample")(x)
        if reduction in taps:
            x = keras.layers.Concatenate(name=f"{scope}.Concat")([x, taps[reduction]])
        x = blocks.conv_norm_act(x, filters, 3, f"{scope}.conv1", settings)
        x = blocks.conv_norm_act(x, filters, 3, f"{scope}.conv2", settings, output_name=f"decoder{stage}")
        if reduction == 8 and coarse_scores:
            coarse = _upsample(blocks.conv(x, classes, 1, "score_8", settings, use_bias=True), 8, classes, "upscore")
    if coarse_scores:
        fine = keras.layers.Conv2D(classes, 1, kernel_initializer="zeros", use_bias=False, name="Logits")(x)
        x = keras.layers.Add(name="fuse")([coarse, fine])
    else:
        x = blocks.conv(x, classes, 1, "Logits", settings, use_bias=True)
    outputs = _output(x, classifier_activation)
    return functional(net.input, outputs, name=name or f"unet_{net.name}")


# ---- DeepLab v3 -------------------------------------------------------------------------------------------------


def deeplab_v3(backbone="resnet50", output_stride=16, classes=21, backbone_weights=None, input_shape=None,
               input_tensor=None, freeze_backbone=False, classifier_activation="softmax", name=None, dropout_rate=0.1, **backbone_args):
    """DeepLab v3 (Chen et al. 2017) on `backbone`.

    Atrous spatial pyramid pooling on the backbone's reduction-`output_stride`
    features: a 1x1 convolution, three 3x3 convolutions with rates 6, 12, 18
    (12, 24, 36 at output stride 8) and image pooling (global average, 1x1,
    broadcast back), each with batch norm and ReLU, concatenated and fused by
    a 1x1 convolution; then 1x1 class scores, upsampled bilinearly to the
    input. A backbone with an `output_stride` option (ResNet, Xception,
    MobileNet v1, Inception-ResNet v2) is built with it, so its later layers
    run atrous; on others the head taps the deepest endpoint at that
    reduction. On a grid of known size the ASPP's atrous convolutions run tap
    by tap where each tap reads the grid (`layers.atrous.AtrousConv2D`: the
    same weights and output, several times faster on small grids).

    Args: as `fcn`, plus `output_stride` (16 or 8) and `dropout_rate` (before
    the scores).
    """
    if output_stride not in ASPP_RATES:
        raise ValueError(f"output_stride must be 16 or 8, got output_stride={output_stride!r}")
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)
    _check_common(classes, freeze_backbone)
    _check_shape(_input_shape(input_shape, input_tensor), output_stride, "deeplab_v3", backbone)
    if isinstance(backbone, str) and output_stride in ATROUS_BACKBONES.get(registry.get_config(backbone).family, ()):
        backbone_args.setdefault("output_stride", output_stride)
    net = build_backbone(backbone, backbone_weights, input_shape, input_tensor, **backbone_args)
    _freeze(net, freeze_backbone)
    x = _taps(net, (output_stride,))[output_stride]
    settings = HEAD_SETTINGS
    branches = [blocks.conv_norm_act(x, ASPP_FILTERS, 1, "aspp.Branch_0.Conv2d_1x1", settings)]
    for i, rate in enumerate(ASPP_RATES[output_stride], start=1):
        branches.append(blocks.conv_norm_act(x, ASPP_FILTERS, 3, f"aspp.Branch_{i}.Conv2d_3x3_rate{rate}", settings,
                                             dilation_rate=rate, by_taps=True))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp.ImagePooling.Pool")(x)
    pooled = blocks.conv_norm_act(pooled, ASPP_FILTERS, 1, "aspp.ImagePooling.Conv2d_1x1", settings)
    # Broadcast the 1x1 map over the grid at any input size: ones shaped like a branch (a Rescaling by 0 plus 1,
    # which has no weights that could train away from it) times the pooled map.
    ones = keras.layers.Rescaling(0.0, offset=1.0, name="aspp.ImagePooling.Grid")(branches[0])
    branches.append(keras.layers.Multiply(name="aspp.ImagePooling.Broadcast")([ones, pooled]))
    x = keras.layers.Concatenate(name="aspp.Concat")(branches)
    x = blocks.conv_norm_act(x, ASPP_FILTERS, 1, "aspp.Project", settings, output_name="aspp")
    x = keras.layers.Dropout(dropout_rate, name="Dropout")(x)
    x = blocks.conv(x, classes, 1, "Logits", settings, use_bias=True)
    x = keras.layers.UpSampling2D(output_stride, interpolation="bilinear", name="Upsample")(x)
    outputs = _output(x, classifier_activation)
    return functional(net.input, outputs, name=name or f"deeplab_v3_{net.name}")


# ---- by name ----------------------------------------------------------------------------------------------------

# What `kerasnets train NAME --backbone B` builds: name -> (head, its fixed arguments).
HEADS = {"fcn8s": (fcn, {"skips": 8}), "fcn16s": (fcn, {"skips": 16}), "fcn32s": (fcn, {"skips": 32}),
         "unet": (unet, {}), "deeplab_v3": (deeplab_v3, {})}


def default_backbone(head):
    """The backbone `head` (a name in HEADS) uses when none is given: its builder's default."""
    builder, _ = HEADS[head]
    return inspect.signature(builder).parameters["backbone"].default


def create_head(head, backbone=None, **kwargs):
    """The segmentation model `head` (a name in HEADS: fcn8s, fcn16s, fcn32s, unet, deeplab_v3) on `backbone`
    (default: the head's own); `kwargs` as the head's builder takes them."""
    if head not in HEADS:
        raise ValueError(f"unknown segmentation head {head!r}; valid: {sorted(HEADS)}")
    builder, fixed = HEADS[head]
    return builder(backbone=backbone or default_backbone(head), **fixed, **kwargs)


def check_input_size(head, backbone, image_size, output_stride=16, **_):
    """Refuses, before any data is read, an `image_size` that `head` on `backbone` cannot take."""
    if head not in HEADS:
        raise ValueError(f"unknown segmentation head {head!r}; valid: {sorted(HEADS)}")
    multiple = output_stride if head == "deeplab_v3" else 32
    if image_size % multiple:
        nearest = max(multiple, round(image_size / multiple) * multiple)
        raise ValueError(f"image_size={image_size}: {head} on {backbone} needs a multiple of {multiple}; the nearest "
                         f"valid size is {nearest}")


# ---- in the registry --------------------------------------------------------------------------------------------

SIZE = 512  # the registry's counts are at 512x512 (DeepLab's 513 crop on PASCAL VOC, to a multiple of 32), 21 classes
PAPERS = {"fcn": "https://arxiv.org/abs/1411.4038", "unet": "https://arxiv.org/abs/1505.04597",
          "deeplab_v3": "https://arxiv.org/abs/1706.05587"}
# name -> (the default backbone's preprocessing, parameters, MACs, the head's own endpoints: (name, channels,
# reduction), in network order), on the default backbone at SIZE, 21 classes. The conformance suite builds each.
FACTS = {
    "fcn8s": ("caffe", 14_874_015, 80_707_571_712, (
        ("score_8", 21, 8), ("score_16", 21, 16), ("score_fr", 21, 32), ("upscore16", 21, 16), ("fuse_16", 21, 16),
        ("upscore8", 21, 8), ("fuse_8", 21, 8), ("upscore", 21, 1))),
    "fcn16s": ("caffe", 15_194_874, 80_656_306_176, (
        ("score_16", 21, 16), ("score_fr", 21, 32), ("upscore16", 21, 16), ("fuse_16", 21, 16), ("upscore", 21, 1))),
    "fcn32s": ("caffe", 16_531_797, 80_643_489_792, (("score_fr", 21, 32), ("upscore", 21, 1))),
    "unet": ("torch", 14_455_589, 22_116_040_704, (
        ("decoder1", 256, 16), ("decoder2", 128, 8), ("score_8", 21, 8), ("upscore", 21, 1), ("decoder3", 64, 4),
        ("decoder4", 32, 2), ("decoder5", 16, 1), ("Logits", 21, 1), ("fuse", 21, 1))),
    "deeplab_v3": ("caffe", 39_131_285, 46_994_817_024, (
        ("aspp", 256, 16), ("Dropout", 256, 16), ("Logits", 21, 16), ("Upsample", 21, 1))),
}


def _registered_builder(head):
    """`create_model(head, ...)`: the head's builder, plus `weights`, a Keras 3 file of the whole segmenter."""
    builder, fixed = HEADS[head]

    def build_head(backbone=None, weights=None, input_shape=None, input_tensor=None, classes=21,
                   classifier_activation="softmax", name=None, **kwargs):
        config = registry.get_config(head)
        build.check_weights_argument(weights, config)
        source = weights_lib.resolve(weights, config, include_top=True)
        model = builder(backbone=backbone or config.backbone, classes=classes, input_shape=input_shape,
                        input_tensor=input_tensor, classifier_activation=classifier_activation, name=name, **fixed,
                        **kwargs)
        weights_lib.load(model, source, config)
        return model

    build_head.__name__ = build_head.__qualname__ = head
    build_head.__doc__ = (f"{head} (`segmentation.{builder.__name__}` with {fixed or 'its defaults'}) on `backbone` "
                          f"(default {default_backbone(head)}); `weights`: a Keras file of the whole model.\n\n"
                          + (builder.__doc__ or ""))
    return build_head


for _head, (_preprocessing, _params, _macs, _features) in FACTS.items():
    registry.register(registry.ModelConfig(
        name=_head, builder=_registered_builder(_head), family="segmentation",
        paper=PAPERS[_head.rstrip("0123456789s") if _head.startswith("fcn") else _head], default_size=SIZE,
        min_size=32, features=tuple(FeatureInfo(*f) for f in _features), params=_params, macs=_macs, classes=21,
        preprocessing=_preprocessing, task="segmentation", backbone=default_backbone(_head)))
