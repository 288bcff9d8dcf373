"""ResNeXt and the squeeze-and-excitation networks, on torchvision's and timm's ResNet.

References:
  Xie, Girshick, Dollar, Tu, He, "Aggregated Residual Transformations for
  Deep Neural Networks", CVPR 2017 (https://arxiv.org/abs/1611.05431),
  table 1: the 3x3 convolution of every bottleneck split into 32 groups.
  Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018
  (https://arxiv.org/abs/1709.01507), table 1: an SE unit (reduction 16) on
  every bottleneck's residual branch.

The bottleneck is torchvision's and timm's ("ResNet v1.5", the layout their
published weights use): no biases, the stride in the 3x3 convolution,
PyTorch's symmetric padding, batch-norm epsilon 1e-5, a 7x7 stem and a 3x3
max pool. A bottleneck of stage filters f has `groups x width_per_group x
f / 64` channels inside and 4f outside. Names and endpoints follow
kerasnets' ResNet (`block3.unit_2.bottleneck.conv2`, its `.se.fc1`;
`conv1`, `pool1`, `block1` ... `block4`).
"""

import functools

import keras

from kerasnets import build, registry
from kerasnets.features import FeatureInfo
from kerasnets.layers import attention, blocks, residual

DEFAULT_SIZE = 224
MIN_SIZE = 32
STAGE_FILTERS = (64, 128, 256, 512)
# torchvision's initialisation (Kaiming normal, fan out) and PyTorch's batch norm (epsilon 1e-5; its momentum
# 0.1 is Keras' 0.9).
CONV_SETTINGS = blocks.ConvSettings(
    initializer=keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal"),
    batch_norm_epsilon=1e-5, batch_norm_momentum=0.9)
SE_REDUCTION = 16


# name -> (units per stage, groups, width per group, squeeze-and-excitation, display name, paper)
ARCHITECTURES = {
    "resnext50_32x4d": ((3, 4, 6, 3), 32, 4, False, "ResNeXt50_32x4d", "https://arxiv.org/abs/1611.05431"),
    "resnext101_32x8d": ((3, 4, 23, 3), 32, 8, False, "ResNeXt101_32x8d", "https://arxiv.org/abs/1611.05431"),
    "seresnet50": ((3, 4, 6, 3), 1, 64, True, "SEResNet50", "https://arxiv.org/abs/1709.01507"),
    "seresnet101": ((3, 4, 23, 3), 1, 64, True, "SEResNet101", "https://arxiv.org/abs/1709.01507"),
    "seresnet152": ((3, 8, 36, 3), 1, 64, True, "SEResNet152", "https://arxiv.org/abs/1709.01507"),
    "seresnext50_32x4d": ((3, 4, 6, 3), 32, 4, True, "SEResNeXt50_32x4d", "https://arxiv.org/abs/1709.01507"),
    "seresnext101_32x4d": ((3, 4, 23, 3), 32, 4, True, "SEResNeXt101_32x4d", "https://arxiv.org/abs/1709.01507"),
}
# At 224x224 with the classifier: all parameters (trainable ones plus the batch norms' moving statistics) and
# multiply-adds.
COUNTS = {
    "resnext50_32x4d": (25_097_128, 4_230_479_872), "resnext101_32x8d": (88_994_216, 16_414_015_488),
    "seresnet50": (28_141_144, 4_091_699_200), "seresnet101": (49_432_216, 7_806_148_608),
    "seresnet152": (66_973_272, 11_520_204_800), "seresnext50_32x4d": (27_628_120, 4_232_994_816),
    "seresnext101_32x4d": (49_093_272, 7_974_739_968),
}


def unit_scope(stage, unit):
    return f"block{stage}.unit_{unit}.bottleneck"


def _body(x, net, arch):
    units, groups, width_per_group, se, _, _ = ARCHITECTURES[arch]
    settings = CONV_SETTINGS.with_initializer(net.initializer)
    hook = attention.squeeze_excitation(SE_REDUCTION) if se else None
    x = blocks.conv_norm_act(x, 64, 7, "conv1", settings, strides=2, padding="symmetric", conv_name="conv1.Conv2D",
                             output_name="conv1")
    yield "conv1", x
    x = blocks.padded_max_pool(x, "pool1")
    yield "pool1", x
    for stage, (filters, count) in enumerate(zip(STAGE_FILTERS, units), start=1):
        width = groups * width_per_group * filters // 64
        for unit in range(1, count + 1):
            x = residual.bottleneck_v1b(
                x, unit_scope(stage, unit), filters, 2 if unit == 1 and stage > 1 else 1, unit == 1,
                f"block{stage}" if unit == count else unit_scope(stage, unit), settings, groups=groups,
                attention=hook, width=width)
        yield f"block{stage}", x


def _features():
    return (FeatureInfo("conv1", 64, 2), FeatureInfo("pool1", 64, 4),
            *(FeatureInfo(f"block{i}", residual.EXPANSION * f, 2 ** (i + 1))
              for i, f in enumerate(STAGE_FILTERS, start=1)))


def _make_builder(arch):
    units, groups, width_per_group, se, display, _ = ARCHITECTURES[arch]
    return build.registered_builder(arch, functools.partial(_body, arch=arch), display, CONV_SETTINGS.initializer,
                                    f"""Instantiates {display}: {sum(units) * 3 + 2} layers, {groups} group(s) of
    {width_per_group} channels per stage-1 bottleneck{", squeeze-and-excitation (Hu et al. 2018)" if se else ""}.

    Args follow keras.applications: `include_top`, `weights` (None; a
    published set{", e.g. " + repr(WEIGHTS[arch][0].tag) if arch in WEIGHTS else ""}; a PyTorch `.pth`/`.safetensors`
    state dict in torchvision's/timm's layout; a Keras `.weights.h5`/`.keras` file), `input_tensor`,
    `input_shape` (at least 32x32, default 224x224x3), `pooling`, `classes`,
    `classifier_activation`, `name`; `final_endpoint` (`conv1`, `pool1`,
    `block1` ... `block4`) truncates the network (with include_top=False).
    """)


# Published PyTorch weights in this layout: torchvision's (acc@1 of its weights enums; "torchvision" is its
# DEFAULT, evaluated resizing to 232 then cropping 224) and timm's (top-1 at 224 from timm's results table).
WEIGHTS = {
    "resnext50_32x4d": (registry.torchvision_weights("torchvision", "resnext50_32x4d-1a0047aa.pth", top1=81.198,
                                                     resize_size=232),
                        registry.torchvision_weights("torchvision_v1", "resnext50_32x4d-7cdf4587.pth", top1=77.618),
                        registry.timm_weights("resnext50_32x4d.a1h_in1k", top1=81.14, crop_fraction=0.95)),
    "resnext101_32x8d": (registry.torchvision_weights("torchvision", "resnext101_32x8d-110c445d.pth", top1=82.834,
                                                      resize_size=232),
                         registry.torchvision_weights("torchvision_v1", "resnext101_32x8d-8ba56ff5.pth",
                                                      top1=79.312)),
    "seresnet50": (registry.timm_weights("seresnet50.ra2_in1k", top1=80.26),
                   registry.timm_weights("seresnet50.a1_in1k", top1=80.012, crop_fraction=0.95)),
    "seresnext50_32x4d": (registry.timm_weights("seresnext50_32x4d.racm_in1k", top1=81.268),
                          registry.timm_weights("seresnext50_32x4d.gluon_in1k", top1=79.916)),
    "seresnext101_32x4d": (registry.timm_weights("seresnext101_32x4d.gluon_in1k", top1=80.886),),
}

CONFIGS = {arch: registry.register(registry.ModelConfig(
    name=arch, builder=_make_builder(arch), family="resnext", paper=ARCHITECTURES[arch][5],
    default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=_features(), params=COUNTS[arch][0],
    macs=COUNTS[arch][1], preprocessing="torch", weights=WEIGHTS.get(arch, ()))) for arch in ARCHITECTURES}
(resnext50_32x4d, resnext101_32x8d, seresnet50, seresnet101, seresnet152, seresnext50_32x4d,
 seresnext101_32x4d) = (CONFIGS[arch].builder for arch in ARCHITECTURES)
