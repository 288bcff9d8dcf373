"""Inception-ResNet v2 with TF-slim's endpoints.

Reference:
  Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the
  Impact of Residual Connections on Learning", AAAI 2017
  (https://arxiv.org/abs/1602.07261), figures 9 and 15-19.

TF-slim's `nets/inception_resnet_v2.py`, which keras.applications'
InceptionResNetV2 also follows convolution for convolution: the stem of
Inception v3, `Mixed_5b`, ten 35x35 residual units (`Repeat/block35_1` ...
`_10`, residuals scaled by 0.17), the reduction `Mixed_6a`, twenty 17x17 units
(`Repeat_1/block17_1` ... `_20`, 0.10; their output is the endpoint
`PreAuxLogits`), the reduction `Mixed_7a`, nine 8x8 units (`Repeat_2/block8_1`
... `_9`, 0.20), a last one without activation (`Block8`), and
`Conv2d_7b_1x1`. Batch norm has no gamma (epsilon 0.001). A residual unit
scales its residual with a `Rescaling` layer, so the model is built from
keras.layers only (keras.applications uses a private layer there).
"""

import functools

from kerasnets import build, registry
from kerasnets.features import FeatureInfo
from kerasnets.layers import blocks, inception
from kerasnets.layers.inception import avg_pool, conv, max_pool

DEFAULT_SIZE = 299
MIN_SIZE = 75
CONV_SETTINGS = blocks.ConvSettings(initializer="glorot_uniform", batch_norm_epsilon=0.001,
                                    batch_norm_momentum=0.9997, batch_norm_scale=False)

STEM = inception.V3_STEM
MIXED_5B = (  # 35x35x320
    ("Branch_0", (conv("Conv2d_1x1", 96, 1),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 48, 1), conv("Conv2d_0b_5x5", 64, 5))),
    ("Branch_2", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_0b_3x3", 96, 3), conv("Conv2d_0c_3x3", 96, 3))),
    ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", 64, 1))),
)
MIXED_6A = (  # 17x17x1088
    ("Branch_0", (conv("Conv2d_1a_3x3", 384, 3, strides=2, padding="valid"),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 256, 1), conv("Conv2d_0b_3x3", 256, 3),
                  conv("Conv2d_1a_3x3", 384, 3, strides=2, padding="valid"))),
    ("Branch_2", (max_pool("MaxPool_1a_3x3"),)),
)
MIXED_7A = (  # 8x8x2080
    ("Branch_0", (conv("Conv2d_0a_1x1", 256, 1), conv("Conv2d_1a_3x3", 384, 3, strides=2, padding="valid"))),
    ("Branch_1", (conv("Conv2d_0a_1x1", 256, 1), conv("Conv2d_1a_3x3", 288, 3, strides=2, padding="valid"))),
    ("Branch_2", (conv("Conv2d_0a_1x1", 256, 1), conv("Conv2d_0b_3x3", 288, 3),
                  conv("Conv2d_1a_3x3", 320, 3, strides=2, padding="valid"))),
    ("Branch_3", (max_pool("MaxPool_1a_3x3"),)),
)
# The residual units (figures 16, 17 and 19): their branches.
BLOCK35 = (
    ("Branch_0", (conv("Conv2d_1x1", 32, 1),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 32, 1), conv("Conv2d_0b_3x3", 32, 3))),
    ("Branch_2", (conv("Conv2d_0a_1x1", 32, 1), conv("Conv2d_0b_3x3", 48, 3), conv("Conv2d_0c_3x3", 64, 3))),
)
BLOCK17 = (
    ("Branch_0", (conv("Conv2d_1x1", 192, 1),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 128, 1), conv("Conv2d_0b_1x7", 160, (1, 7)),
                  conv("Conv2d_0c_7x1", 192, (7, 1)))),
)
BLOCK8 = (
    ("Branch_0", (conv("Conv2d_1x1", 192, 1),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_0b_1x3", 224, (1, 3)),
                  conv("Conv2d_0c_3x1", 256, (3, 1)))),
)
# (slim's repeat scope, unit, branches, count, residual scale)
REPEATS = {
    "Mixed_5b": ("Repeat", "block35", BLOCK35, 10, 0.17),
    "Mixed_6a": ("Repeat_1", "block17", BLOCK17, 20, 0.10),
    "Mixed_7a": ("Repeat_2", "block8", BLOCK8, 9, 0.20),
}
MODULES = (("Mixed_5b", MIXED_5B), ("Mixed_6a", MIXED_6A), ("Mixed_7a", MIXED_7A))
FINAL_UNIT = ("Block8", BLOCK8, 1.0)  # a last 8x8 unit, without activation
TOP_CONV = ("Conv2d_7b_1x1", conv(None, 1536, 1))  # 8x8x1536


def _network(align_feature_maps, output_stride):
    """(stem, modules, block17) after slim's options, as edits of the data: `align_feature_maps` pads every
    valid convolution and pooling `same`; output stride 8 keeps Mixed_6a at stride 1 and dilates the 17x17
    units by 2."""
    stem, modules, block17 = STEM, MODULES, BLOCK17
    if align_feature_maps:
        def same(op):
            return op._replace(padding="same") if op.padding == "valid" else op
        stem, modules = inception.restyle(stem, same), inception.restyle(modules, same)
    if output_stride == 8:
        def unstrided(op):
            return op._replace(strides=1)
        modules = tuple((name, inception.restyle(branches, unstrided) if name == "Mixed_6a" else branches)
                        for name, branches in modules)
        block17 = inception.restyle(BLOCK17, lambda op: op._replace(dilation=2))
    return stem, modules, block17


def _body(x, net, align_feature_maps=False, output_stride=16):
    settings = CONV_SETTINGS.with_initializer(net.initializer)
    stem, modules, block17 = _network(align_feature_maps, output_stride)
    for endpoint, x in inception.stem_and_modules(x, stem, (), settings):
        yield endpoint, x
    for module, branches in modules:
        x = inception.module(x, module, branches, settings)
        yield module, x
        repeat, unit, unit_branches, count, scale = REPEATS[module]
        unit_branches = block17 if unit == "block17" else unit_branches
        for i in range(1, count + 1):
            scope = f"{repeat}/{unit}_{i}"
            output = "PreAuxLogits" if unit == "block17" and i == count else scope.replace("/", ".")
            x = inception.residual_module(x, scope, unit_branches, settings, scale, output)
        if unit == "block17":
            yield "PreAuxLogits", x
    x = inception.residual_module(x, FINAL_UNIT[0], FINAL_UNIT[1], settings, FINAL_UNIT[2],
                                  f"{FINAL_UNIT[0]}.add", activate=False)  # (not an endpoint in slim)
    x = inception.unit(x, TOP_CONV[1], TOP_CONV[0], settings, endpoint=True)
    yield TOP_CONV[0], x


def _aux_head(x, net):
    settings = CONV_SETTINGS.with_initializer(net.initializer)
    # slim names the aux head's average pool Conv2d_1a_3x3 and its 5x5 convolution Conv2d_2a_5x5 whatever its size
    return inception.slim_aux_classifier(x, net, settings, "AuxLogits", "Conv2d_1a_3x3", "Conv2d_2a_5x5")


def inception_resnet_v2(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                        classes=1000, classifier_activation="softmax", name="InceptionResNetV2",
                        final_endpoint=None, aux_logits=False, output_stride=16, align_feature_maps=False,
                        dropout_rate=0.2):
    """Instantiates Inception-ResNet v2 (Szegedy et al., AAAI 2017) with TF-slim's endpoints.

    Args follow keras.applications: `include_top`, `weights` (None;
    "imagenet", keras.applications' published file, fetched and
    hash-checked; "imagenet_slim", TF-slim's published checkpoint (1001
    classes, or 1000 with its background class dropped); a
    keras.applications-layout `.h5`, a TF-slim checkpoint prefix, or a Keras
    `.weights.h5`/`.keras` file), `input_tensor`, `input_shape` (at least
    75x75, default 299x299x3), `pooling`, `classes`, `classifier_activation`,
    `name`; and slim's options:
      final_endpoint: truncate after this endpoint (with include_top=False);
        default the last one (`PreAuxLogits` at output stride 8).
      aux_logits: add slim's auxiliary classifier on `PreAuxLogits`; the
        model then outputs `[Predictions, AuxLogits]` (logits). Needs a fixed
        input size.
      output_stride: 16, or 8 for dense prediction: `Mixed_6a` keeps the
        35x35 grid and the 17x17 units run atrous (rate 2). As in slim, the
        network then ends at `PreAuxLogits` (include_top=False).
      align_feature_maps: pad every convolution and pooling `same`, so the
        feature maps are the input's size over their reduction.
      dropout_rate: dropout before `Logits` (slim keeps 0.8).
    """
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)
    build.check_flag("aux_logits", aux_logits)
    build.check_flag("align_feature_maps", align_feature_maps)
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got output_stride={output_stride!r}")
    if output_stride == 8:
        endpoints = CONFIG.endpoints
        allowed = endpoints[:endpoints.index("PreAuxLogits") + 1]
        final_endpoint = "PreAuxLogits" if final_endpoint is None else final_endpoint
        if include_top or final_endpoint not in allowed:
            raise ValueError(
                f"output_stride=8 builds Inception-ResNet v2 up to PreAuxLogits (as slim does): pass "
                f"include_top=False and a final_endpoint up to it; got include_top={include_top}, "
                f"final_endpoint={final_endpoint!r}")
    return build.build_model(
        "inception_resnet_v2", functools.partial(_body, align_feature_maps=align_feature_maps,
                                                 output_stride=output_stride),
        include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
        final_endpoint=final_endpoint, initializer=CONV_SETTINGS.initializer,
        head=build.ClassifierHead("AvgPool_1a_8x8", (dropout_rate, "Dropout")),
        side_head=build.SideHead("PreAuxLogits", _aux_head) if aux_logits else None,
        check_shape=functools.partial(_check_aux_input, align_feature_maps=align_feature_maps)
        if aux_logits else None)


def _check_aux_input(shape, align_feature_maps):
    stem, modules, _ = _network(align_feature_maps, 16)
    inception.check_aux_input(shape, stem, modules[:2], "Mixed_6a")  # PreAuxLogits keeps Mixed_6a's grid


def _features():
    found = inception.features(STEM, MODULES[:2])  # the stem, Mixed_5b, Mixed_6a
    width, reduction = found[-1].channels, found[-1].reduction  # the residual units keep both
    return found + (FeatureInfo("PreAuxLogits", width, reduction),
                    FeatureInfo("Mixed_7a", inception.module_channels(MIXED_7A, width), 2 * reduction),
                    FeatureInfo(TOP_CONV[0], TOP_CONV[1].filters, 2 * reduction))


IMAGENET = registry.keras_applications_weights(
    "inception_resnet_v2/inception_resnet_v2", "e693bd0210a403b3192acc6073ad2e96", "d19885ff4a710c122648d3b5c3b684e4",
    preprocessing="tf", input_size=DEFAULT_SIZE, top1=80.3)
CONFIG = registry.register(registry.ModelConfig(
    name="inception_resnet_v2", builder=inception_resnet_v2, family="inception_resnet_v2",
    paper="https://arxiv.org/abs/1602.07261", default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=_features(),
    params=55_873_736, macs=13_155_794_016, preprocessing="tf",
    weights=(IMAGENET, registry.slim_weights("inception_resnet_v2_2016_08_30.tar.gz",
                                             "inception_resnet_v2_2016_08_30.ckpt", input_size=DEFAULT_SIZE,
                                             top1=80.4, tag="imagenet_slim"))))
