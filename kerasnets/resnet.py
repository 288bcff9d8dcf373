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
"""

import keras

from kerasnets import common
from kerasnets import registry
from kerasnets import weights as weights_lib

DEFAULT_SIZE = 224
MIN_SIZE = 32
BATCH_NORM_EPSILON = 1.001e-5  # keras.applications'
STAGE_FILTERS = (64, 128, 256, 512)  # bottleneck units output 4x these
KERNEL_INITIALIZER = "glorot_uniform"  # keras.applications' (Keras') default

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


def _stride(kind, stage, unit, units):
    """v1 halves the grid on a stage's first unit (not stage 1); v2 on its last (not stage 4)."""
    if kind == "bottleneck_v2":
        return 2 if unit == units and stage < 4 else 1
    return 2 if unit == 1 and stage > 1 else 1


class _Layers:
    """Layer factories sharing the initializer and batch-norm settings."""

    def __init__(self, initializer):
        self.initializer = initializer

    def conv(self, x, filters, kernel, name, strides=1, use_bias=True, padding="valid"):
        if padding == "explicit":  # symmetric padding, as keras.applications (and torchvision) pad
            x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}.Pad")(x)
            padding = "valid"
        return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias,
                                   kernel_initializer=self.initializer, name=name)(x)

    @staticmethod
    def norm(x, name):
        return keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=name)(x)

    @staticmethod
    def relu(x, name):
        return keras.layers.Activation("relu", name=name)(x)


def _bottleneck_v1(L, x, scope, filters, strides, project, output_name):
    shortcut = x
    if project:
        shortcut = L.norm(L.conv(x, 4 * filters, 1, f"{scope}.shortcut", strides=strides), f"{scope}.shortcut.BatchNorm")
    x = L.relu(L.norm(L.conv(x, filters, 1, f"{scope}.conv1", strides=strides), f"{scope}.conv1.BatchNorm"),
               f"{scope}.conv1.Relu")
    x = L.relu(L.norm(L.conv(x, filters, 3, f"{scope}.conv2", padding="same"), f"{scope}.conv2.BatchNorm"),
               f"{scope}.conv2.Relu")
    x = L.norm(L.conv(x, 4 * filters, 1, f"{scope}.conv3"), f"{scope}.conv3.BatchNorm")
    x = keras.layers.Add(name=f"{scope}.add")([shortcut, x])
    return L.relu(x, output_name)


def _bottleneck_v2(L, x, scope, filters, strides, project, output_name):
    preact = L.relu(L.norm(x, f"{scope}.preact"), f"{scope}.preact.Relu")
    if project:
        shortcut = L.conv(preact, 4 * filters, 1, f"{scope}.shortcut", strides=strides)
    elif strides > 1:
        shortcut = keras.layers.MaxPooling2D(1, strides=strides, name=f"{scope}.shortcut")(x)
    else:
        shortcut = x
    x = L.relu(L.norm(L.conv(preact, filters, 1, f"{scope}.conv1", use_bias=False), f"{scope}.conv1.BatchNorm"),
               f"{scope}.conv1.Relu")
    x = L.conv(x, filters, 3, f"{scope}.conv2", strides=strides, use_bias=False, padding="explicit")
    x = L.relu(L.norm(x, f"{scope}.conv2.BatchNorm"), f"{scope}.conv2.Relu")
    x = L.conv(x, 4 * filters, 1, f"{scope}.conv3")
    return keras.layers.Add(name=output_name)([shortcut, x])


def _basic(L, x, scope, filters, strides, project, output_name):
    shortcut = x
    if project:
        shortcut = L.norm(L.conv(x, filters, 1, f"{scope}.shortcut", strides=strides, use_bias=False),
                          f"{scope}.shortcut.BatchNorm")
    x = L.conv(x, filters, 3, f"{scope}.conv1", strides=strides, use_bias=False, padding="explicit")
    x = L.relu(L.norm(x, f"{scope}.conv1.BatchNorm"), f"{scope}.conv1.Relu")
    x = L.norm(L.conv(x, filters, 3, f"{scope}.conv2", use_bias=False, padding="same"), f"{scope}.conv2.BatchNorm")
    x = keras.layers.Add(name=f"{scope}.add")([shortcut, x])
    return L.relu(x, output_name)


UNITS = {"basic": _basic, "bottleneck_v1": _bottleneck_v1, "bottleneck_v2": _bottleneck_v2}


def _projects(kind, stage, unit):
    """Projection shortcut on each stage's first unit (basic blocks: where the shape changes)."""
    return unit == 1 and (kind != "basic" or stage > 1)


def endpoint_names(kind):
    names = ["conv1", "pool1", "block1", "block2", "block3", "block4"]
    return tuple(names + (["postnorm"] if kind == "bottleneck_v2" else []))


def _resnet(arch, include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation, name,
            final_endpoint):
    config = registry.get_config(arch)
    kind, units = ARCHITECTURES[arch]
    valid = endpoint_names(kind)
    if final_endpoint is None:
        final_endpoint = valid[-1]
    common.check_final_endpoint(final_endpoint, valid, include_top)
    shape = common.validate_common(include_top=include_top, weights=weights, input_shape=input_shape,
                                   input_tensor=input_tensor, pooling=pooling, classes=classes, config=config)
    source = weights_lib.resolve(weights, config, include_top)
    L = _Layers(KERNEL_INITIALIZER if source is None else "zeros")

    inputs, source_inputs = common.make_input(shape, input_tensor)
    # conv1: 7x7/2, 64 (v2: a plain convolution, normalised by the first unit's preact).
    if kind == "bottleneck_v2":
        x = L.conv(inputs, 64, 7, "conv1", strides=2, padding="explicit")
    else:
        x = L.conv(inputs, 64, 7, "conv1.Conv2D", strides=2, padding="explicit", use_bias=kind != "basic")
        x = L.relu(L.norm(x, "conv1.BatchNorm"), "conv1")
    if final_endpoint != "conv1":
        x = keras.layers.ZeroPadding2D(1, name="pool1.Pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
        stages = () if final_endpoint == "pool1" else enumerate(zip(STAGE_FILTERS, units), start=1)
        for stage, (filters, count) in stages:
            for unit in range(1, count + 1):
                scope = f"block{stage}.unit_{unit}.{kind}"
                output_name = f"block{stage}" if unit == count else scope
                x = UNITS[kind](L, x, scope, filters, _stride(kind, stage, unit, count),
                                _projects(kind, stage, unit), output_name)
            if final_endpoint == f"block{stage}":
                break
        else:
            if kind == "bottleneck_v2" and final_endpoint == "postnorm":
                x = L.relu(L.norm(x, "postnorm.BatchNorm"), "postnorm")
    model = common.model_with_top(inputs, source_inputs, x, include_top=include_top, pooling=pooling,
                                  classes=classes, classifier_activation=classifier_activation,
                                  initializer=L.initializer, name=name)
    weights_lib.load(model, source, keras_applications_layout=_keras_applications_layout(arch))
    return model


def _keras_applications_layout(arch):
    """keras.applications' names -> ours; None for the networks it does not have."""
    kind, units = ARCHITECTURES[arch]
    if kind == "basic":
        return None
    v2 = kind == "bottleneck_v2"
    table = {"conv1_conv": "conv1" if v2 else "conv1.Conv2D", "predictions": "Logits"}
    table.update({"post_bn": "postnorm.BatchNorm"} if v2 else {"conv1_bn": "conv1.BatchNorm"})
    for stage, count in enumerate(units, start=1):
        for unit in range(1, count + 1):
            theirs, ours = f"conv{stage + 1}_block{unit}", f"block{stage}.unit_{unit}.{kind}"
            if unit == 1:
                table[f"{theirs}_0_conv"] = f"{ours}.shortcut"
                if not v2:
                    table[f"{theirs}_0_bn"] = f"{ours}.shortcut.BatchNorm"
            if v2:
                table[f"{theirs}_preact_bn"] = f"{ours}.preact"
            for k in (1, 2, 3):
                table[f"{theirs}_{k}_conv"] = f"{ours}.conv{k}"
                if k < 3 or not v2:
                    table[f"{theirs}_{k}_bn"] = f"{ours}.conv{k}.BatchNorm"
    return weights_lib.KerasApplicationsLayout(table=table, auto_named=())


def _make_builder(arch, display_name, paper_note):
    def builder(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
                classifier_activation="softmax", name=display_name, final_endpoint=None):
        return _resnet(arch, include_top, weights, input_tensor, input_shape, pooling, classes,
                       classifier_activation, name, final_endpoint)

    builder.__name__ = builder.__qualname__ = arch
    builder.__doc__ = f"""Instantiates {display_name} ({paper_note}).

    Args follow keras.applications: `include_top`, `weights` (None, "imagenet"
    where keras.applications publishes weights, a keras.applications-layout
    `.h5`, or a Keras `.weights.h5`/`.keras` file from kerasnets),
    `input_tensor`, `input_shape` (at least 32x32, default 224x224x3),
    `pooling`, `classes`, `classifier_activation`, `name`; `final_endpoint`
    (one of {list(endpoint_names(ARCHITECTURES[arch][0]))}) truncates the
    network (with include_top=False).
    """
    return builder


# keras.applications' published MD5s (top, notop), keyed by its weights name.
_PUBLISHED = {
    "resnet50": ("resnet50", "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("resnet152", "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    "resnet50_v2": ("resnet50v2", "3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101_v2": ("resnet101v2", "6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152_v2": ("resnet152v2", "a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}
_PREPROCESSING = {"basic": "torch", "bottleneck_v1": "caffe", "bottleneck_v2": "tf"}


def _published_weights(arch):
    if arch not in _PUBLISHED:
        return {}
    stem, top_md5, notop_md5 = _PUBLISHED[arch]
    return registry.keras_applications_weights(f"resnet/{stem}", top_md5, notop_md5)


resnet18 = _make_builder("resnet18", "ResNet18", "He et al., CVPR 2016, basic blocks")
resnet34 = _make_builder("resnet34", "ResNet34", "He et al., CVPR 2016, basic blocks")
resnet50 = _make_builder("resnet50", "ResNet50", "He et al., CVPR 2016")
resnet101 = _make_builder("resnet101", "ResNet101", "He et al., CVPR 2016")
resnet152 = _make_builder("resnet152", "ResNet152", "He et al., CVPR 2016")
resnet50_v2 = _make_builder("resnet50_v2", "ResNet50V2", "He et al., ECCV 2016, pre-activation")
resnet101_v2 = _make_builder("resnet101_v2", "ResNet101V2", "He et al., ECCV 2016, pre-activation")
resnet152_v2 = _make_builder("resnet152_v2", "ResNet152V2", "He et al., ECCV 2016, pre-activation")

BUILDERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
            "resnet152": resnet152, "resnet50_v2": resnet50_v2, "resnet101_v2": resnet101_v2,
            "resnet152_v2": resnet152_v2}

for _arch, _builder in BUILDERS.items():
    _kind = ARCHITECTURES[_arch][0]
    registry.register(registry.ModelConfig(
        name=_arch, builder=_builder, default_size=DEFAULT_SIZE, min_size=MIN_SIZE,
        preprocessing=_PREPROCESSING[_kind], classes=1000,
        paper="https://arxiv.org/abs/1603.05027" if _kind == "bottleneck_v2" else "https://arxiv.org/abs/1512.03385",
        weights=_published_weights(_arch)))
