"""ResNet v1 and v2.

References:
  He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
  (https://arxiv.org/abs/1512.03385) -- v1, table 1 (18/34 basic, 50/101/152 bottleneck).
  He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016
  (https://arxiv.org/abs/1603.05027) -- v2, pre-activation.

The bottleneck networks are keras.applications' ResNet50/101/152 and
ResNet50V2/101V2/152V2 layer for layer (v1: stride 2 on the first unit of a
stage, projection shortcuts, convolutions with biases; v2: pre-activation,
stride 2 on the last unit of a stage), so their published files load. Names
follow TF-slim's resnet scopes: `conv1`, `pool1`, `block1.unit_1.bottleneck_v1.conv1`
(its `.BatchNorm`, `.Relu`), `...shortcut`; each stage's output is the
endpoint `block1` ... `block4`. resnet18/34 use basic blocks (two 3x3
convolutions, no biases before batch norm), as torchvision builds them.

torchvision's ResNet-50/101/152 are "ResNet v1.5": the stride in the 3x3
convolution, no biases, batch-norm epsilon 1e-5. `variant="torchvision"`
builds that (the names stay; the model is named `ResNet50_v1_5`), and a
PyTorch state dict or a torchvision tag chooses it by itself: the weights are
resolved before the model is built, so the layout picks the architecture.
"""

import functools

from kerasnets import build, registry
from kerasnets.features import FeatureInfo
from kerasnets.layers import blocks, residual

DEFAULT_SIZE = 224
MIN_SIZE = 32
STAGE_FILTERS = (64, 128, 256, 512)  # bottleneck units output residual.EXPANSION x these
# keras.applications': Glorot-uniform kernels (Keras' default), batch norm epsilon 1.001e-5; torchvision's basic
# nets and ResNet v1.5: PyTorch's epsilon 1e-5.
CONV_SETTINGS = blocks.ConvSettings(batch_norm_epsilon=1.001e-5)
TORCH_SETTINGS = blocks.ConvSettings(batch_norm_epsilon=1e-5)
VARIANTS = ("keras", "torchvision")

# Units per stage (paper table 1) and the unit kind.
ARCHITECTURES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck_v1", (3, 4, 6, 3)),
    "resnet101": ("bottleneck_v1", (3, 4, 23, 3)),
    "resnet152": ("bottleneck_v1", (3, 8, 36, 3)),
    "resnet50_v2": ("bottleneck_v2", (3, 4, 6, 3)),
    "resnet101_v2": ("bottleneck_v2", (3, 4, 23, 3)),
    "resnet152_v2": ("bottleneck_v2", (3, 8, 36, 3)),
}
# keras.applications' names and published MD5s (top, notop), its published top-1 (keras.io), and the
# preprocessing each kind's weights expect (torchvision's for the basic nets).
PUBLISHED = {
    "resnet50": ("resnet50", "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626", 74.9),
    "resnet101": ("resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21", 76.4),
    "resnet152": ("resnet152", "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c", 76.6),
    "resnet50_v2": ("resnet50v2", "3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917", 76.0),
    "resnet101_v2": ("resnet101v2", "6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5", 77.2),
    "resnet152_v2": ("resnet152v2", "a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33", 78.0),
}
# torchvision's published state dicts and acc@1 (its weights enums): "torchvision" is its DEFAULT, evaluated
# resizing to 232 then cropping 224 for the V2 sets.
TORCHVISION = {
    "resnet18": {"torchvision": ("resnet18-f37072fd.pth", 69.758, 256)},
    "resnet34": {"torchvision": ("resnet34-b627a593.pth", 73.314, 256)},
    "resnet50": {"torchvision": ("resnet50-11ad3fa6.pth", 80.858, 232),
                 "torchvision_v1": ("resnet50-0676ba61.pth", 76.13, 256)},
    "resnet101": {"torchvision": ("resnet101-cd907fc2.pth", 81.886, 232),
                  "torchvision_v1": ("resnet101-63fe2227.pth", 77.374, 256)},
    "resnet152": {"torchvision": ("resnet152-f82ba261.pth", 82.284, 232),
                  "torchvision_v1": ("resnet152-394f9c45.pth", 78.312, 256)},
}
# timm's ResNets (the same layout as torchvision's; "ResNet strikes back" recipes, Wightman et al. 2021): its default
# tag per depth, top-1 at 224 from timm's results table and the crop_pct of its pretrained cfg.
TIMM = {
    "resnet18": ("resnet18.a1_in1k", 71.504, 0.95),
    "resnet34": ("resnet34.a1_in1k", 76.42, 0.95),
    "resnet50": ("resnet50.a1_in1k", 80.382, 0.95),
    "resnet101": ("resnet101.a1h_in1k", 81.95, 0.95),
    "resnet152": ("resnet152.a1h_in1k", 82.818, 0.95),
}
PREPROCESSING = {"basic": "torch", "bottleneck_v1": "caffe", "bottleneck_v2": "tf"}
CITATIONS = {"basic": "He et al., CVPR 2016", "bottleneck_v1": "He et al., CVPR 2016",
             "bottleneck_v2": "He et al., ECCV 2016, pre-activation"}
PAPERS = {"basic": "https://arxiv.org/abs/1512.03385", "bottleneck_v1": "https://arxiv.org/abs/1512.03385",
          "bottleneck_v2": "https://arxiv.org/abs/1603.05027"}
DISPLAY_NAMES = {"resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50", "resnet101": "ResNet101",
                 "resnet152": "ResNet152", "resnet50_v2": "ResNet50V2", "resnet101_v2": "ResNet101V2",
                 "resnet152_v2": "ResNet152V2"}
# At the default size, with the top: parameters (keras.applications' counts; for 18/34, torchvision's
# 11,689,512 / 21,797,672 plus the batch norms' moving statistics, which PyTorch keeps as buffers) and MACs.
COUNTS = {
    "resnet18": (11_699_112, 1_814_073_344), "resnet34": (21_814_696, 3_663_761_408),
    "resnet50": (25_636_712, 3_857_973_248), "resnet101": (44_707_176, 7_570_194_432),
    "resnet152": (60_419_944, 11_282_415_616), "resnet50_v2": (25_613_800, 3_482_255_360),
    "resnet101_v2": (44_675_560, 7_194_476_544), "resnet152_v2": (60_380_648, 10_906_697_728),
}


def _stride(kind, stage, unit, units):
    """v1 halves the grid on a stage's first unit (not stage 1); v2 on its last (not stage 4)."""
    if kind == "bottleneck_v2":
        return 2 if unit == units and stage < 4 else 1
    return 2 if unit == 1 and stage > 1 else 1


def _projects(kind, stage, unit):
    """Projection shortcut on each stage's first unit (basic blocks: where the shape changes)."""
    return unit == 1 and (kind != "basic" or stage > 1)


def _schedule(kind, units, output_stride):
    """(stride, dilation) of every unit, stage by stage (`blocks.atrous_schedule` from pool1's reduction 4)."""
    strides = [_stride(kind, stage, unit, count) for stage, count in enumerate(units, start=1)
               for unit in range(1, count + 1)]
    flat, _ = blocks.atrous_schedule(4, strides, output_stride)
    return [flat[sum(units[:stage]):sum(units[:stage + 1])] for stage in range(len(units))]


def unit_scope(kind, stage, unit):
    return f"block{stage}.unit_{unit}.{kind}"


def _body(x, net, arch, output_stride=None, variant="keras"):
    kind, units = ARCHITECTURES[arch]
    torch_like = kind == "basic" or variant == "torchvision"
    unit = residual.UNITS["bottleneck_v1b" if variant == "torchvision" and kind == "bottleneck_v1" else kind]
    settings = (TORCH_SETTINGS if torch_like else CONV_SETTINGS).with_initializer(net.initializer)
    # conv1: 7x7/2, 64 (v2: a plain convolution, normalised by the first unit's preact).
    if kind == "bottleneck_v2":
        x = blocks.conv(x, 64, 7, "conv1", settings, strides=2, padding="symmetric", use_bias=True)
    else:
        x = blocks.conv_norm_act(x, 64, 7, "conv1", settings, strides=2, padding="symmetric",
                                 conv_name="conv1.Conv2D", output_name="conv1", use_bias=not torch_like)
    yield "conv1", x
    x = blocks.padded_max_pool(x, "pool1")
    yield "pool1", x
    schedule = _schedule(kind, units, output_stride)
    for stage, (filters, count) in enumerate(zip(STAGE_FILTERS, units), start=1):
        for number in range(1, count + 1):
            scope = unit_scope(kind, stage, number)
            output_name = f"block{stage}" if number == count else scope
            stride, dilation = schedule[stage - 1][number - 1]
            skipped = _stride(kind, stage, number, count) // stride  # a stride removed for output_stride
            x = unit(x, scope, filters, stride, _projects(kind, stage, number), output_name, settings,
                     dilation=dilation, dilation_after_stride=dilation * skipped)
        yield f"block{stage}", x
    if kind == "bottleneck_v2":
        x = blocks.activation(blocks.batch_norm(x, "postnorm.BatchNorm", settings), "postnorm", settings)
        yield "postnorm", x


def _variant(arch, variant, weights):
    """The architecture to build: `variant` as given, else the one `weights` are written for."""
    variant = build.choose_variant(arch, variant, weights, VARIANTS)
    if variant == "torchvision" and ARCHITECTURES[arch][0] == "bottleneck_v2":
        raise ValueError(f"variant='torchvision': torchvision has no {arch} (pre-activation ResNet); "
                         "use variant='keras' (keras.applications' ResNetV2)")
    return variant


def _resnet(arch, include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name,
            final_endpoint, output_stride, variant=None):
    if output_stride not in (None, 8, 16, 32):
        raise ValueError(f"output_stride must be None, 8, 16 or 32, got output_stride={output_stride!r}")
    variant = _variant(arch, variant, weights)
    if name is None:
        v1_5 = variant == "torchvision" and ARCHITECTURES[arch][0] == "bottleneck_v1"
        name = DISPLAY_NAMES[arch] + ("_v1_5" if v1_5 else "")
    return build.build_model(
        arch, functools.partial(_body, arch=arch, output_stride=output_stride, variant=variant),
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name,
        final_endpoint=final_endpoint, initializer=CONV_SETTINGS.initializer)


def _features(kind):
    expansion = 1 if kind == "basic" else residual.EXPANSION
    reductions = (4, 8, 16, 32) if kind != "bottleneck_v2" else (8, 16, 32, 32)  # v2 strides at a stage's end
    return (FeatureInfo("conv1", 64, 2), FeatureInfo("pool1", 64, 4),
            *(FeatureInfo(f"block{i}", expansion * f, r) for i, (f, r) in enumerate(zip(STAGE_FILTERS, reductions),
                                                                                    start=1)),
            *((FeatureInfo("postnorm", expansion * STAGE_FILTERS[-1], 32),) if kind == "bottleneck_v2" else ()))


def _make_builder(arch):
    kind = ARCHITECTURES[arch][0]

    def builder(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
                classifier_activation="softmax", name=None, final_endpoint=None, output_stride=None, variant=None):
        return _resnet(arch, include_top, weights, input_tensor, input_shape, pooling, classes,
                       classifier_activation, name, final_endpoint, output_stride, variant)

    builder.__name__ = builder.__qualname__ = arch
    builder.__doc__ = f"""Instantiates {DISPLAY_NAMES[arch]} ({CITATIONS[kind]}; {kind.replace("_", " ")} units).

    Args follow keras.applications: `include_top`, `weights` (None, "imagenet"
    where keras.applications publishes weights, "torchvision" (and
    "torchvision_v1") for torchvision's, a keras.applications-layout `.h5`, a
    PyTorch `.pth`/`.safetensors` state dict, or a Keras `.weights.h5`/`.keras`
    file from kerasnets), `variant` (None: what the weights are written for;
    "keras"; "torchvision": ResNet v1.5 for the bottleneck nets),
    `input_tensor`, `input_shape` (at least 32x32, default 224x224x3),
    `pooling`, `classes`, `classifier_activation`, `name`; `final_endpoint`
    (one of {[f.endpoint for f in _features(kind)]}) truncates the network
    (with include_top=False); `output_stride` (None: 32; 16 or 8) keeps the
    grid that much finer by dilating the later 3x3 convolutions instead of
    striding (atrous, as slim's ResNets for dense prediction; the weights are
    the same).
    """
    return builder


def _register(arch):
    kind = ARCHITECTURES[arch][0]
    published = ()
    if arch in PUBLISHED:
        stem, top_md5, notop_md5, top1 = PUBLISHED[arch]
        published = (registry.keras_applications_weights(f"resnet/{stem}", top_md5, notop_md5,
                                                         preprocessing=PREPROCESSING[kind], input_size=224,
                                                         top1=top1),)
    if arch in TORCHVISION:
        published += tuple(registry.torchvision_weights(tag, filename, top1=top1, resize_size=resize)
                           for tag, (filename, top1, resize) in TORCHVISION[arch].items())
    if arch in TIMM:
        tag, top1, crop = TIMM[arch]
        published += (registry.timm_weights(tag, top1=top1, crop_fraction=crop),)
    params, macs = COUNTS[arch]
    return registry.register(registry.ModelConfig(
        name=arch, builder=_make_builder(arch), family="resnet", paper=PAPERS[kind], default_size=DEFAULT_SIZE,
        min_size=MIN_SIZE, features=_features(kind), params=params, macs=macs, preprocessing=PREPROCESSING[kind],
        weights=published))


CONFIGS = {arch: _register(arch) for arch in ARCHITECTURES}
resnet18, resnet34, resnet50, resnet101, resnet152, resnet50_v2, resnet101_v2, resnet152_v2 = (
    CONFIGS[arch].builder for arch in ARCHITECTURES)
