"""Per-family layout tables: how each foreign format names our layers' variables.

Derived from the models' architecture data (so a table cannot drift from the
model); layouts import models, never the reverse. `layout(name, format)` gives
the table of registered model `name` in `format` (None where the publisher has
no such file for it).
"""

import functools

from kerasnets.models import (inception_resnet_v2, inception_v1, inception_v3, mobilenet_v1, resnet, resnext,
                              shufflenet_v2, vgg, xception)
from kerasnets.layers import inception
from kerasnets.weights.keras_applications import KerasApplicationsLayout
from kerasnets.weights.pytorch import TorchLayout
from kerasnets.weights.slim import SlimLayout


def _inception_v3_keras_applications():
    # keras.applications creates its 94 conv/batch-norm pairs in slim's order and leaves them unnamed:
    # conv2d_<i> and batch_normalization_<i> belong to the i-th slim scope.
    scopes = inception_v3.conv_scopes()
    return KerasApplicationsLayout(table={
        **{f"conv2d_{i}": inception_v3.conv_layer_name(s) for i, s in enumerate(scopes, start=1)},
        **{f"batch_normalization_{i}": f"{s.replace('/', '.')}.BatchNorm" for i, s in enumerate(scopes, start=1)},
        "predictions": "Logits",
    })


def _inception_v1_slim():
    return SlimLayout(scope="InceptionV1", renamed={"Logits": "Logits/Conv2d_0c_1x1"}, classifiers=("Logits",))


def _inception_v2_slim():
    return SlimLayout(scope="InceptionV2", renamed={"Logits": "Logits/Conv2d_1c_1x1"}, classifiers=("Logits",))


def _inception_v3_slim():
    return SlimLayout(
        scope="InceptionV3",
        # Keras layer name -> slim scope, where the rule "." -> "/" does not give it.
        renamed={"Logits": "Logits/Conv2d_1c_1x1", "AuxLogits.Conv2d_2b_1x1": "AuxLogits/Conv2d_2b_1x1"},
        classifiers=("Logits", "AuxLogits.Conv2d_2b_1x1"),
    )


def _inception_v4_slim():
    return SlimLayout(scope="InceptionV4", renamed={"Logits": "Logits/Logits", "AuxLogits": "AuxLogits/Aux_logits"},
                      classifiers=("Logits", "AuxLogits"))


def _inception_resnet_v2_slim():
    return SlimLayout(scope="InceptionResnetV2", renamed={"Logits": "Logits/Logits", "AuxLogits": "AuxLogits/Logits"},
                      classifiers=("Logits", "AuxLogits"))


def _inception_resnet_v2_keras_applications():
    """keras.applications creates the convolutions in slim's order; it names the units' 1x1 projections
    (`block35_1_conv` ... `block8_10_conv`) and the last convolution (`conv_7b`), the others are automatic."""
    model = inception_resnet_v2
    scopes = list(inception.conv_scopes(model.STEM, model.MODULES[:1]))  # the stem and Mixed_5b
    table = {}
    for (module, branches), unit_scopes in zip(model.MODULES, _units_by_module()):
        if module != "Mixed_5b":
            scopes.extend(inception.conv_scopes((), ((module, branches),)))
        for unit_scope, unit_branches in unit_scopes:
            scopes.extend(inception.conv_scopes((), ((unit_scope, unit_branches),)))
    final, final_branches, _ = model.FINAL_UNIT
    scopes.extend(inception.conv_scopes((), ((final, final_branches),)))
    for i, scope in enumerate(scopes, start=1):
        table[f"conv2d_{i}"] = inception.conv_layer_name(scope, model.CONFIG.endpoints)
        table[f"batch_normalization_{i}"] = f"{scope.replace('/', '.')}.BatchNorm"
    for kind, count in (("block35", 10), ("block17", 20), ("block8", 10)):
        for i in range(1, count + 1):
            table[f"{kind}_{i}_conv"] = _unit_projection(kind, i)
    table.update({"conv_7b": f"{model.TOP_CONV[0]}.Conv2D", "conv_7b_bn": f"{model.TOP_CONV[0]}.BatchNorm",
                  "predictions": "Logits"})
    return KerasApplicationsLayout(table=table)


def _units_by_module():
    model = inception_resnet_v2
    for module, _ in model.MODULES:
        repeat, unit, branches, count, _ = model.REPEATS[module]
        yield [(f"{repeat}/{unit}_{i}", branches) for i in range(1, count + 1)]


def _unit_projection(kind, i):
    """Our name of keras.applications' `<kind>_<i>_conv` (its block8_10 is slim's last `Block8`)."""
    model = inception_resnet_v2
    if kind == "block8" and i == 10:
        return f"{model.FINAL_UNIT[0]}.Conv2d_1x1"
    repeat = {"block35": "Repeat", "block17": "Repeat_1", "block8": "Repeat_2"}[kind]
    return f"{repeat}.{kind}_{i}.Conv2d_1x1"


def _xception_keras_applications():
    """keras.applications' Xception names -> ours (its four shortcut convolutions are unnamed)."""
    table = {}

    def pair(theirs, ours):
        table[theirs] = ours
        table[f"{theirs}_bn"] = f"{ours}.BatchNorm"

    pair("block1_conv1", "EntryFlow_Block1.Conv2d_1")
    pair("block1_conv2", "EntryFlow_Block1.Conv2d_2")
    for i, block in enumerate(xception.STRIDED_BLOCKS, start=1):
        table[f"conv2d_{i}"] = f"{block.name}.Shortcut"
        table[f"batch_normalization_{i}"] = f"{block.name}.Shortcut.BatchNorm"
    # keras.applications numbers the blocks 1..14: entry 2-4, middle 5-12, exit 13-14.
    for number, (block, convs) in enumerate(xception.separable_blocks(), start=2):
        for j in range(1, convs + 1):
            pair(f"block{number}_sepconv{j}", f"{block}.SeparableConv2d_{j}")
    table["predictions"] = "Logits"
    return KerasApplicationsLayout(table=table)


def _resnet_keras_applications(arch):
    """keras.applications' ResNet/ResNetV2 names -> ours."""
    kind, units = resnet.ARCHITECTURES[arch]
    v2 = kind == "bottleneck_v2"
    table = {"conv1_conv": "conv1" if v2 else "conv1.Conv2D", "predictions": "Logits"}
    table.update({"post_bn": "postnorm.BatchNorm"} if v2 else {"conv1_bn": "conv1.BatchNorm"})
    for stage, count in enumerate(units, start=1):
        for unit in range(1, count + 1):
            theirs, ours = f"conv{stage + 1}_block{unit}", resnet.unit_scope(kind, stage, unit)
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
    return KerasApplicationsLayout(table=table, auto_named=())


def _vgg_keras_applications(arch):
    """keras.applications' VGG: `block<b>_conv<i>`, `fc1`, `fc2`, `predictions` (slim's conv<b>_<i>, fc6-fc8)."""
    table = {f"block{b}_conv{i}": f"conv{b}.conv{b}_{i}"
             for b, count in enumerate(vgg.CONVS_PER_BLOCK[arch], start=1) for i in range(1, count + 1)}
    table.update({"fc1": "fc6", "fc2": "fc7", "predictions": "Logits"})
    return KerasApplicationsLayout(table=table, auto_named=())


def _vgg_slim(arch):
    """slim's `vgg_16/conv3/conv3_2`, `vgg_16/fc6` ... `fc8`: 1000 classes, no background class."""
    return SlimLayout(scope=f"vgg_{arch[3:]}", renamed={"Logits": "fc8"}, classifiers=("Logits",), label_offset=0)


def _mobilenet_v1_keras_applications():
    """keras.applications' MobileNet: `conv1`, `conv_dw_<i>`, `conv_pw_<i>` (each with `_bn`), `conv_preds`."""
    table = {"conv1": "Conv2d_0.Conv2D", "conv1_bn": "Conv2d_0.BatchNorm", "conv_preds": "Logits"}
    for i in range(1, len(mobilenet_v1.SEPARABLE) + 1):
        for theirs, ours in ((f"conv_dw_{i}", f"Conv2d_{i}_depthwise"), (f"conv_pw_{i}", f"Conv2d_{i}_pointwise")):
            table.update({theirs: f"{ours}.Conv2D", f"{theirs}_bn": f"{ours}.BatchNorm"})
    return KerasApplicationsLayout(table=table, auto_named=())


def _mobilenet_v1_slim():
    return SlimLayout(scope="MobilenetV1", renamed={"Logits": "Logits/Conv2d_1c_1x1"}, classifiers=("Logits",))


def _torchvision_resnet(units, unit_scope, convs=3):
    """torchvision's ResNet naming (timm's too): `conv1`, `bn1`, `layer<stage>.<unit - 1>.conv<k>`/`.bn<k>`,
    `.downsample.0`/`.1`, timm's `.se.fc1`/`.fc2`, `fc`; `unit_scope(stage, unit)` gives ours."""
    modules = {"conv1.Conv2D": "conv1", "conv1.BatchNorm": "bn1", "Logits": "fc"}
    for stage, count in enumerate(units, start=1):
        for unit in range(1, count + 1):
            ours, theirs = unit_scope(stage, unit), f"layer{stage}.{unit - 1}"
            for k in range(1, convs + 1):
                modules.update({f"{ours}.conv{k}": f"{theirs}.conv{k}", f"{ours}.conv{k}.BatchNorm": f"{theirs}.bn{k}"})
            modules.update({f"{ours}.shortcut": f"{theirs}.downsample.0",
                            f"{ours}.shortcut.BatchNorm": f"{theirs}.downsample.1",
                            f"{ours}.se.fc1": f"{theirs}.se.fc1", f"{ours}.se.fc2": f"{theirs}.se.fc2"})
    return TorchLayout(modules)


def _resnext_torch(arch):
    """torchvision's ResNeXt and timm's SE nets."""
    return _torchvision_resnet(resnext.ARCHITECTURES[arch][0], resnext.unit_scope)


def _resnet_torch(arch):
    """torchvision's ResNet-18/34 (basic units: two convolutions) and ResNet v1.5 (`variant="torchvision"`)."""
    kind, units = resnet.ARCHITECTURES[arch]
    return _torchvision_resnet(units, functools.partial(resnet.unit_scope, kind), convs=2 if kind == "basic" else 3)


def _vgg_torch(arch):
    """torchvision's VGG: `features.<i>` numbers every layer (convolution, ReLU, and a max pool after each block),
    `classifier.0`/`.3`/`.6` are fc6, fc7 and the class scores (fc6 reads pool5 flattened channels first)."""
    modules, index = {}, 0
    for b, count in enumerate(vgg.CONVS_PER_BLOCK[arch], start=1):
        for i in range(1, count + 1):
            modules[f"conv{b}.conv{b}_{i}"] = f"features.{index}"
            index += 2  # the convolution and its ReLU
        index += 1  # the block's max pool
    head = {"fc6": "classifier.0", "fc7": "classifier.3", "Logits": "classifier.6"}
    modules.update(head)
    modules.update({"fc6.Conv2D": "classifier.0", "fc7.Conv2D": "classifier.3"})  # fully_convolutional=True
    return TorchLayout(modules, head=tuple(head.values()), flattened={"fc6": "pool5", "fc6.Conv2D": "pool5"})


# torchvision's ShuffleNet v2 branches are nn.Sequential: their indices count the ReLUs between layers.
_SHUFFLE_BRANCHES = {
    "branch1.depthwise": "branch1.0", "branch1.depthwise.BatchNorm": "branch1.1",
    "branch1.pointwise": "branch1.2", "branch1.pointwise.BatchNorm": "branch1.3",
    "branch2.pointwise_1": "branch2.0", "branch2.pointwise_1.BatchNorm": "branch2.1",
    "branch2.depthwise": "branch2.3", "branch2.depthwise.BatchNorm": "branch2.4",
    "branch2.pointwise_2": "branch2.5", "branch2.pointwise_2.BatchNorm": "branch2.6",
}


def _shufflenet_v2_torch():
    """torchvision's ShuffleNet v2: `conv1.0`/`.1`, `stage<s>.<unit - 1>.branch<b>.<i>`, `conv5.0`/`.1`, `fc`
    (the same names at every width)."""
    modules = {"Conv1.Conv2D": "conv1.0", "Conv1.BatchNorm": "conv1.1", "Conv5.Conv2D": "conv5.0",
               "Conv5.BatchNorm": "conv5.1", "Logits": "fc"}
    for stage, repeats in enumerate(shufflenet_v2.REPEATS, start=2):
        for unit in range(1, repeats + 1):
            modules.update({f"Stage{stage}.unit_{unit}.{ours}": f"stage{stage}.{unit - 1}.{theirs}"
                            for ours, theirs in _SHUFFLE_BRANCHES.items()})
    return TorchLayout(modules)


def _torch_branches(block, branches, names):
    """{our conv and batch norm: torchvision's BasicConv2d `.conv`/`.bn`} of module `block`: `names` gives, branch by
    branch, torchvision's module of each convolution in order (a Fork's convolutions in turn)."""
    modules = {}
    for (branch, ops), theirs in zip(branches, names):
        convs = [c for op in ops for c in (op.convs if isinstance(op, inception.Fork) else (op,))
                 if isinstance(c, inception.Conv)]
        assert len(convs) == len(theirs), (block, branch)
        for conv, module in zip(convs, theirs):
            ours = f"{block}.{branch}.{conv.name}"
            modules.update({ours: f"{module}.conv", f"{ours}.BatchNorm": f"{module}.bn"})
    return modules


def _googlenet_torch():
    """torchvision's GoogLeNet: `conv1`-`conv3`, `inception3a`...`inception5b` (slim's Mixed_3b...Mixed_5c), whose
    `branch1` is a convolution and `branch2`-`branch4` are sequences (branch4's pool is its item 0); `fc`; its
    auxiliary classifiers `aux1`, `aux2` are unused."""
    modules = {"Conv2d_1a_7x7.Conv2D": "conv1.conv", "Conv2d_1a_7x7.BatchNorm": "conv1.bn",
               "Conv2d_2b_1x1.Conv2D": "conv2.conv", "Conv2d_2b_1x1.BatchNorm": "conv2.bn",
               "Conv2d_2c_3x3.Conv2D": "conv3.conv", "Conv2d_2c_3x3.BatchNorm": "conv3.bn", "Logits": "fc"}
    for block, branches in inception_v1.MODULES:
        if isinstance(branches, inception.Pool):
            continue
        theirs = "inception" + block[len("Mixed_"):-1] + chr(ord(block[-1]) - 1)  # Mixed_3b -> inception3a
        names = [[f"{theirs}.branch{b}" if len(ops) == 1 else f"{theirs}.branch{b}.{i}"
                  for i, op in enumerate(ops) if isinstance(op, inception.Conv)]
                 for b, (_, ops) in enumerate(branches, start=1)]
        modules.update(_torch_branches(block, branches, names))
    return TorchLayout(modules, unused=("aux1", "aux2"))


# torchvision's names of Inception v3's convolutions, branch by branch, per kind of module (InceptionA-E).
_INCEPTION3_BRANCHES = {
    "A": (("branch1x1",), ("branch5x5_1", "branch5x5_2"), ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
          ("branch_pool",)),
    "B": (("branch3x3",), ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), ()),
    "C": (("branch1x1",), ("branch7x7_1", "branch7x7_2", "branch7x7_3"),
          tuple(f"branch7x7dbl_{i}" for i in range(1, 6)), ("branch_pool",)),
    "D": (("branch3x3_1", "branch3x3_2"), tuple(f"branch7x7x3_{i}" for i in range(1, 5)), ()),
    "E": (("branch1x1",), ("branch3x3_1", "branch3x3_2a", "branch3x3_2b"),
          ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b"), ("branch_pool",)),
}
_INCEPTION3_KINDS = {"Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B", "Mixed_6b": "C",
                     "Mixed_6c": "C", "Mixed_6d": "C", "Mixed_6e": "C", "Mixed_7a": "D", "Mixed_7b": "E",
                     "Mixed_7c": "E"}


def _inception_v3_torch():
    """torchvision's Inception v3: slim's names for the stem and the modules (`Conv2d_1a_3x3.conv`/`.bn`,
    `Mixed_5b.branch5x5_1.conv`), `fc`, and `AuxLogits.conv0`/`.conv1`/`.fc` (used when aux_logits=True)."""
    modules = {f"{scope}.Conv2D": f"{scope}.conv" for scope, op in inception_v3.STEM if isinstance(op, inception.Conv)}
    modules.update({f"{scope}.BatchNorm": f"{scope}.bn" for scope, op in inception_v3.STEM
                    if isinstance(op, inception.Conv)})
    for block, branches in inception_v3.MIXED:
        modules.update(_torch_branches(block, branches, [[f"{block}.{n}" for n in names]
                                                         for names in _INCEPTION3_BRANCHES[_INCEPTION3_KINDS[block]]]))
    modules.update({"Logits": "fc", "AuxLogits.Conv2d_1b_1x1": "AuxLogits.conv0.conv",
                    "AuxLogits.Conv2d_1b_1x1.BatchNorm": "AuxLogits.conv0.bn",
                    "AuxLogits.Conv2d_2a_5x5": "AuxLogits.conv1.conv",
                    "AuxLogits.Conv2d_2a_5x5.BatchNorm": "AuxLogits.conv1.bn",
                    "AuxLogits.Conv2d_2b_1x1": "AuxLogits.fc"})
    return TorchLayout(modules, head=("fc", "AuxLogits.fc"), unused=("AuxLogits",))


# (model, format) -> the function that makes its table.
LAYOUTS = {
    ("inception_v1", "slim"): _inception_v1_slim,
    ("inception_v2", "slim"): _inception_v2_slim,
    ("inception_v3", "keras_applications"): _inception_v3_keras_applications,
    ("inception_v3", "slim"): _inception_v3_slim,
    ("inception_v4", "slim"): _inception_v4_slim,
    ("inception_resnet_v2", "slim"): _inception_resnet_v2_slim,
    ("xception", "keras_applications"): _xception_keras_applications,
    ("inception_resnet_v2", "keras_applications"): _inception_resnet_v2_keras_applications,
    **{(arch, fmt): functools.partial(make, arch) for arch in vgg.CONVS_PER_BLOCK
       for fmt, make in (("keras_applications", _vgg_keras_applications), ("slim", _vgg_slim))},
    **{(name, fmt): make for name in mobilenet_v1.ALPHAS
       for fmt, make in (("keras_applications", _mobilenet_v1_keras_applications), ("slim", _mobilenet_v1_slim))},
    **{(arch, "keras_applications"): functools.partial(_resnet_keras_applications, arch)
       for arch, (kind, _) in resnet.ARCHITECTURES.items() if kind != "basic"},
    **{(arch, "torch"): functools.partial(_resnext_torch, arch) for arch in resnext.ARCHITECTURES},
    **{(arch, "torch"): functools.partial(_vgg_torch, arch) for arch in vgg.CONVS_PER_BLOCK},
    **{(arch, "torch"): functools.partial(_resnet_torch, arch) for arch, (kind, _) in resnet.ARCHITECTURES.items()
       if kind != "bottleneck_v2"},
    **{(name, "torch"): _shufflenet_v2_torch for name in shufflenet_v2.WIDTHS},
    ("inception_v1", "torch"): _googlenet_torch,
    ("inception_v3", "torch"): _inception_v3_torch,
}


@functools.lru_cache(maxsize=None)
def layout(name, fmt):
    """The table of model `name` in format `fmt` ("keras_applications", "slim", "torch"); None if it has none."""
    make = LAYOUTS.get((name, fmt))
    return None if make is None else make()


def formats(name):
    """The formats model `name` loads, for messages."""
    return ["Keras 3 .weights.h5/.keras"] + [{"keras_applications": "keras.applications .h5",
                                               "slim": "TF-slim checkpoint",
                                               "torch": "PyTorch state dict (.pth/.safetensors)"}[fmt]
                                              for model, fmt in LAYOUTS if model == name]
