"""ShuffleNet v2.

Reference:
  Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient
  CNN Architecture Design", ECCV 2018 (https://arxiv.org/abs/1807.11164),
  table 5 and figure 3.

As torchvision builds it (the layout its published weights use): `Conv1`
(3x3/2, 24), `MaxPool` (3x3/2), stages `Stage2`-`Stage4` of 4/8/4 units and
`Conv5` (1x1). A stride-1 unit splits its channels in two, transforms one half
(1x1, 3x3 depthwise, 1x1) and concatenates it with the other; a stride-2 unit
transforms both halves of a doubled output (the other through a 3x3/2
depthwise and a 1x1). Every unit ends with a channel shuffle of two groups.
Convolutions have no biases, batch norm epsilon is 1e-5 and stride-2 layers
pad 1 on every side, as PyTorch pads. The endpoints carry the paper's stage
names.
"""

import functools

import keras

from kerasnets import build, registry
from kerasnets.features import FeatureInfo
from kerasnets.layers import blocks
from kerasnets.layers.shuffle import ChannelShuffle, ChannelSplit

DEFAULT_SIZE = 224
MIN_SIZE = 32
REPEATS = (4, 8, 4)  # units in Stage2, Stage3, Stage4
# Table 5: output channels of Stage2-4 and Conv5 per width.
WIDTHS = {
    "shufflenet_v2_x0_5": ((48, 96, 192), 1024),
    "shufflenet_v2_x1_0": ((116, 232, 464), 1024),
    "shufflenet_v2_x1_5": ((176, 352, 704), 1024),
    "shufflenet_v2_x2_0": ((244, 488, 976), 2048),
}
STEM_CHANNELS = 24
# PyTorch's batch norm (epsilon 1e-5, momentum 0.1: Keras' 0.9); torchvision's default convolution init
# (Kaiming uniform with a = sqrt(5): a uniform variance scaling of 1/3).
CONV_SETTINGS = blocks.ConvSettings(
    initializer=keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform"),
    batch_norm_epsilon=1e-5, batch_norm_momentum=0.9)


def _depthwise(x, strides, scope, settings):
    x = blocks.depthwise_conv(x, 3, scope, settings, strides=strides, padding="symmetric" if strides > 1 else "same")
    return blocks.batch_norm(x, f"{scope}.BatchNorm", settings)


def _pointwise(x, filters, scope, settings):
    return blocks.conv_norm_act(x, filters, 1, scope, settings, padding="valid")


def unit(x, filters, strides, scope, output_name, settings):
    """Figure 3 (c) (strides 1) and (d) (strides 2): `filters` output channels, half from each branch."""
    half = filters // 2
    if strides == 1:
        kept, x = ChannelSplit(2, name=f"{scope}.split")(x)
    else:
        kept = _depthwise(x, strides, f"{scope}.branch1.depthwise", settings)
        kept = _pointwise(kept, half, f"{scope}.branch1.pointwise", settings)
    x = _pointwise(x, half, f"{scope}.branch2.pointwise_1", settings)
    x = _depthwise(x, strides, f"{scope}.branch2.depthwise", settings)
    x = _pointwise(x, half, f"{scope}.branch2.pointwise_2", settings)
    x = keras.layers.Concatenate(name=f"{scope}.concat")([kept, x])
    return ChannelShuffle(2, name=output_name)(x)


def _body(x, net, model_name):
    stage_channels, conv5 = WIDTHS[model_name]
    settings = CONV_SETTINGS.with_initializer(net.initializer)
    x = blocks.conv_norm_act(x, STEM_CHANNELS, 3, "Conv1", settings, strides=2, padding="symmetric",
                             conv_name="Conv1.Conv2D", output_name="Conv1")
    yield "Conv1", x
    x = blocks.padded_max_pool(x, "MaxPool")
    yield "MaxPool", x
    for stage, (channels, repeats) in enumerate(zip(stage_channels, REPEATS), start=2):
        for i in range(1, repeats + 1):
            scope = f"Stage{stage}.unit_{i}"
            x = unit(x, channels, 2 if i == 1 else 1, scope, f"Stage{stage}" if i == repeats else scope, settings)
        yield f"Stage{stage}", x
    x = blocks.conv_norm_act(x, conv5, 1, "Conv5", settings, padding="valid", conv_name="Conv5.Conv2D",
                             output_name="Conv5")
    yield "Conv5", x


def _features(model_name):
    stage_channels, conv5 = WIDTHS[model_name]
    return (FeatureInfo("Conv1", STEM_CHANNELS, 2), FeatureInfo("MaxPool", STEM_CHANNELS, 4),
            *(FeatureInfo(f"Stage{s}", c, 2 ** (s + 1)) for s, c in enumerate(stage_channels, start=2)),
            FeatureInfo("Conv5", conv5, 32))


def _make_builder(model_name):
    width = model_name.rsplit("_x", 1)[1].replace("_", ".")
    return build.registered_builder(model_name, functools.partial(_body, model_name=model_name),
                                    f"ShuffleNetV2_x{width}", CONV_SETTINGS.initializer, f"""Instantiates ShuffleNet v2 {width}x (Ma et al., ECCV 2018, table 5).

    Args follow keras.applications: `include_top`, `weights` (None;
    "torchvision", torchvision's ImageNet weights, fetched and hash-checked;
    a PyTorch `.pth`/`.safetensors` state dict in torchvision's layout; or a
    Keras `.weights.h5`/`.keras` file from kerasnets), `input_tensor`,
    `input_shape` (at least 32x32, default 224x224x3), `pooling`, `classes`,
    `classifier_activation`, `name`; `final_endpoint` (`Conv1`, `MaxPool`,
    `Stage2`, `Stage3`, `Stage4`, `Conv5`) truncates the network (with
    include_top=False).
    """)


# torchvision's published weights: file, acc@1 of its weights enums, and the size its evaluation resizes to
# before the central 224 crop.
TORCHVISION = {"shufflenet_v2_x0_5": ("shufflenetv2_x0.5-f707e7126e.pth", 60.552, 256),
               "shufflenet_v2_x1_0": ("shufflenetv2_x1-5666bf0f80.pth", 69.362, 256),
               "shufflenet_v2_x1_5": ("shufflenetv2_x1_5-3c479a10.pth", 72.996, 232),
               "shufflenet_v2_x2_0": ("shufflenetv2_x2_0-8be3c8ee.pth", 76.230, 232)}
# At 224x224 with the classifier: all parameters (trainable plus batch-norm statistics) and multiply-adds.
COUNTS = {"shufflenet_v2_x0_5": (1_374_744, 40_476_448), "shufflenet_v2_x1_0": (2_294_784, 144_907_992),
          "shufflenet_v2_x1_5": (3_527_064, 295_759_392), "shufflenet_v2_x2_0": (7_427_712, 583_253_464)}
CONFIGS = {name: registry.register(registry.ModelConfig(
    name=name, builder=_make_builder(name), family="shufflenet_v2", paper="https://arxiv.org/abs/1807.11164",
    default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=_features(name), params=COUNTS[name][0],
    macs=COUNTS[name][1], preprocessing="torch",
    weights=(registry.torchvision_weights("torchvision", TORCHVISION[name][0], top1=TORCHVISION[name][1],
                                          resize_size=TORCHVISION[name][2]),)))
    for name in WIDTHS}
shufflenet_v2_x0_5, shufflenet_v2_x1_0, shufflenet_v2_x1_5, shufflenet_v2_x2_0 = (
    CONFIGS[name].builder for name in WIDTHS)
