"""Inception v3 with TF-slim's endpoints.

Reference:
  Szegedy, Vanhoucke, Ioffe, Shlens, Wojna, "Rethinking the Inception
  Architecture for Computer Vision", CVPR 2016 (https://arxiv.org/abs/1512.00567).

The network is TF-slim's `nets/inception_v3.py` layer for layer, which is also
keras.applications' InceptionV3 (same convolutions, created in the same order),
so both published weight layouts load into it. Layer names mirror slim's
variable scopes with "." for "/": `Mixed_5b.Branch_1.Conv2d_0b_5x5` is the
convolution, `...Conv2d_0b_5x5.BatchNorm` its batch norm; the layer whose
output is an endpoint carries the endpoint's name.
"""

import collections

import keras

from kerasnets.model import KerasnetsModel

from kerasnets import common
from kerasnets import registry
from kerasnets import weights as weights_lib

# Hyper-parameters shared by every convolution (slim's inception_arg_scope).
BATCH_NORM_EPSILON = 0.001
BATCH_NORM_MOMENTUM = 0.9997  # slim's `decay`
WEIGHT_INITIALIZER = "he_normal"  # slim's variance_scaling_initializer(): 2/fan_in, truncated normal

Conv = collections.namedtuple("Conv", "name filters kernel strides padding")
Pool = collections.namedtuple("Pool", "name kind strides padding")
Fork = collections.namedtuple("Fork", "convs")  # parallel convolutions, concatenated


def conv(name, filters, kernel, strides=1, padding="same"):
    return Conv(name, filters, kernel if isinstance(kernel, tuple) else (kernel, kernel), strides, padding)


def avg_pool(name):
    return Pool(name, "avg", 1, "same")


def max_pool(name, strides=2, padding="valid"):
    return Pool(name, "max", strides, padding)


# The stem (paper table 1 up to the first inception module): one op per endpoint.
STEM = (
    ("Conv2d_1a_3x3", conv(None, 32, 3, strides=2, padding="valid")),  # 149x149x32
    ("Conv2d_2a_3x3", conv(None, 32, 3, padding="valid")),  # 147x147x32
    ("Conv2d_2b_3x3", conv(None, 64, 3)),  # 147x147x64
    ("MaxPool_3a_3x3", max_pool(None)),  # 73x73x64
    ("Conv2d_3b_1x1", conv(None, 80, 1, padding="valid")),  # 73x73x80
    ("Conv2d_4a_3x3", conv(None, 192, 3, padding="valid")),  # 71x71x192
    ("MaxPool_5a_3x3", max_pool(None)),  # 35x35x192
)


def _module_35x35(pool_filters, branch_1_names=("Conv2d_0a_1x1", "Conv2d_0b_5x5")):
    """Figure 5 of the paper: 1x1, 5x5, double 3x3 and pooled branches."""
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", 64, 1),)),
        ("Branch_1", (conv(branch_1_names[0], 48, 1), conv(branch_1_names[1], 64, 5))),
        ("Branch_2", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_0b_3x3", 96, 3), conv("Conv2d_0c_3x3", 96, 3))),
        ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", pool_filters, 1))),
    )


def _module_17x17(width):
    """Figure 6: 7x7 convolutions factorised into 1x7 and 7x1."""
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", 192, 1),)),
        ("Branch_1", (conv("Conv2d_0a_1x1", width, 1), conv("Conv2d_0b_1x7", width, (1, 7)),
                      conv("Conv2d_0c_7x1", 192, (7, 1)))),
        ("Branch_2", (conv("Conv2d_0a_1x1", width, 1), conv("Conv2d_0b_7x1", width, (7, 1)),
                      conv("Conv2d_0c_1x7", width, (1, 7)), conv("Conv2d_0d_7x1", width, (7, 1)),
                      conv("Conv2d_0e_1x7", 192, (1, 7)))),
        ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", 192, 1))),
    )


def _module_8x8(branch_1_second="Conv2d_0b_3x1"):
    """Figure 7: expanded filter bank with 1x3 / 3x1 forks."""
    return (
        ("Branch_0", (conv("Conv2d_0a_1x1", 320, 1),)),
        ("Branch_1", (conv("Conv2d_0a_1x1", 384, 1),
                      Fork((conv("Conv2d_0b_1x3", 384, (1, 3)), conv(branch_1_second, 384, (3, 1)))))),
        ("Branch_2", (conv("Conv2d_0a_1x1", 448, 1), conv("Conv2d_0b_3x3", 384, 3),
                      Fork((conv("Conv2d_0c_1x3", 384, (1, 3)), conv("Conv2d_0d_3x1", 384, (3, 1)))))),
        ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", 192, 1))),
    )


# The inception modules, as slim names them (its scopes are the weight names).
MIXED = (
    ("Mixed_5b", _module_35x35(32)),  # 35x35x256
    ("Mixed_5c", _module_35x35(64, ("Conv2d_0b_1x1", "Conv_1_0c_5x5"))),  # 35x35x288
    ("Mixed_5d", _module_35x35(64)),  # 35x35x288
    ("Mixed_6a", (  # grid reduction to 17x17x768 (figure 10)
        ("Branch_0", (conv("Conv2d_1a_1x1", 384, 3, strides=2, padding="valid"),)),
        ("Branch_1", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_0b_3x3", 96, 3),
                      conv("Conv2d_1a_1x1", 96, 3, strides=2, padding="valid"))),
        ("Branch_2", (max_pool("MaxPool_1a_3x3"),)),
    )),
    ("Mixed_6b", _module_17x17(128)),
    ("Mixed_6c", _module_17x17(160)),
    ("Mixed_6d", _module_17x17(160)),
    ("Mixed_6e", _module_17x17(192)),  # 17x17x768
    ("Mixed_7a", (  # grid reduction to 8x8x1280
        ("Branch_0", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_1a_3x3", 320, 3, strides=2, padding="valid"))),
        ("Branch_1", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_0b_1x7", 192, (1, 7)),
                      conv("Conv2d_0c_7x1", 192, (7, 1)), conv("Conv2d_1a_3x3", 192, 3, strides=2, padding="valid"))),
        ("Branch_2", (max_pool("MaxPool_1a_3x3"),)),
    )),
    ("Mixed_7b", _module_8x8()),  # 8x8x2048
    ("Mixed_7c", _module_8x8("Conv2d_0c_3x1")),  # 8x8x2048
)

BASE_ENDPOINTS = tuple(name for name, _ in STEM) + tuple(name for name, _ in MIXED)
AUX_INPUT = "Mixed_6e"
GRID_REDUCTIONS = ("Mixed_6a", "Mixed_7a")  # 3x3 stride-2 valid branches
MIN_SIZE = 75
DEFAULT_SIZE = 299


def conv_scopes():
    """Slim scopes of all base convolutions, in the order slim (and keras.applications) creates them."""
    scopes = []
    for endpoint, op in STEM:
        if isinstance(op, Conv):
            scopes.append(endpoint)
    for block, branches in MIXED:
        for branch, ops in branches:
            for op in ops:
                for c in (op.convs if isinstance(op, Fork) else (op,)):
                    if isinstance(c, Conv):
                        scopes.append(f"{block}/{branch}/{c.name}")
    return tuple(scopes)


def conv_layer_name(scope):
    """Keras name of the convolution of slim `scope`: endpoint units end in a ReLU named after them."""
    name = scope.replace("/", ".")
    return f"{name}.Conv2D" if name in BASE_ENDPOINTS else name


def _conv_bn(x, filters, kernel, strides, padding, scope, output_name=None, initializer=WEIGHT_INITIALIZER):
    """slim.conv2d with its batch norm (no scale, as slim) and ReLU."""
    conv_name = conv_layer_name(scope)
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                            kernel_initializer=initializer, name=conv_name)(x)
    x = keras.layers.BatchNormalization(scale=False, epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM,
                                        name=f"{scope.replace('/', '.')}.BatchNorm")(x)
    return keras.layers.Activation("relu", name=output_name or f"{scope.replace('/', '.')}.Relu")(x)


def _pool(x, op, name):
    layer = keras.layers.AveragePooling2D if op.kind == "avg" else keras.layers.MaxPooling2D
    return layer(3, strides=op.strides, padding=op.padding, name=name)(x)


def _apply_branch(x, ops, scope, depth, initializer):
    for op in ops:
        if isinstance(op, Conv):
            x = _conv_bn(x, depth(op.filters), op.kernel, op.strides, op.padding, f"{scope}/{op.name}",
                         initializer=initializer)
        elif isinstance(op, Pool):
            x = _pool(x, op, f"{scope}/{op.name}".replace("/", "."))
        else:  # Fork
            forks = [_conv_bn(x, depth(c.filters), c.kernel, c.strides, c.padding, f"{scope}/{c.name}",
                              initializer=initializer) for c in op.convs]
            x = keras.layers.Concatenate(name=f"{scope.replace('/', '.')}.concat")(forks)
    return x


def _spatial_size(size, until):
    """Height (or width) of base endpoint `until` for an input of `size` (None stays None)."""
    if size is None:
        return None
    for endpoint, op in STEM:
        kernel = op.kernel[0] if isinstance(op, Conv) else 3
        size = -(-size // op.strides) if op.padding == "same" else (size - kernel) // op.strides + 1
        if endpoint == until:
            return size
    for block, _ in MIXED:
        if block in GRID_REDUCTIONS:
            size = (size - 3) // 2 + 1
        if block == until:
            return size
    raise ValueError(f"unknown endpoint {until!r}")


def inception_v3(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name="InceptionV3", final_endpoint="Mixed_7c",
                 depth_multiplier=1.0, min_depth=16, aux_logits=False, dropout_rate=0.2):
    """Instantiates Inception v3 (Szegedy et al., CVPR 2016) with TF-slim's endpoints.

    Args:
      include_top: whether to add the classifier (`AvgPool_1a`, `PreLogits`
        dropout, `Logits`, `Predictions`).
      weights: None (slim's initializers), "imagenet" (keras.applications'
        published file, fetched and hash-checked), the path of a
        keras.applications-layout `.h5`, of a Keras `.weights.h5`/`.keras`
        file written from a kerasnets model, or a TF-slim checkpoint prefix.
        A slim checkpoint has 1001 classes (0 = background); with
        `classes=1000` that row is dropped so indices match ImageNet's 1000.
      input_tensor: optional Keras tensor to use as the model's input.
      input_shape: (height, width, channels), at least 75x75; height and
        width may be None. Defaults to (299, 299, 3).
      pooling: None, "avg" or "max": global pooling when include_top=False.
      classes: number of classes of the classifier.
      classifier_activation: activation of `Predictions` (None: logits).
      name: model name.
      final_endpoint: truncate the network after this base endpoint, like
        slim's `inception_v3_base` (only with include_top=False).
      depth_multiplier: scales every convolution's filters:
        `max(int(filters * depth_multiplier), min_depth)`.
      min_depth: the minimum number of filters after scaling.
      aux_logits: add slim's auxiliary head on Mixed_6e; the model then
        outputs `[Predictions, AuxLogits]` (AuxLogits are logits).
      dropout_rate: dropout before `Logits` (slim keeps 0.8: rate 0.2).

    Returns:
      A `keras.Model`; `kerasnets.endpoints(model)` lists its endpoints.
    """
    config = registry.get_config("inception_v3")
    if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, (int, float)) or depth_multiplier <= 0:
        raise ValueError(f"depth_multiplier must be a number > 0, got depth_multiplier={depth_multiplier!r}")
    if isinstance(min_depth, bool) or not isinstance(min_depth, int) or min_depth < 1:
        raise ValueError(f"min_depth must be a positive integer, got min_depth={min_depth!r}")
    if not 0 <= dropout_rate < 1:
        raise ValueError(f"dropout_rate must be in [0, 1), got dropout_rate={dropout_rate!r}")
    common.check_final_endpoint(final_endpoint, BASE_ENDPOINTS, include_top)
    if aux_logits and not include_top:
        raise ValueError("aux_logits=True adds a second classifier and needs include_top=True")
    shape = common.validate_common(include_top=include_top, weights=weights, input_shape=input_shape,
                                   input_tensor=input_tensor, pooling=pooling, classes=classes, config=config)
    if aux_logits:
        aux_size = [_spatial_size(d, AUX_INPUT) for d in shape[:2]]
        if any(d is not None and d < 5 for d in aux_size):
            raise ValueError(
                f"aux_logits=True needs Mixed_6e to be at least 5x5 (input at least 107x107); "
                f"input_shape={tuple(shape)} gives {aux_size}"
            )
    source = weights_lib.resolve(weights, config, include_top)

    def depth(filters):
        return max(int(filters * depth_multiplier), min_depth)

    # Layers a weights file will fill start at zero: slim's truncated-normal draws
    # would cost a third of the build time for nothing.
    initializer = WEIGHT_INITIALIZER if source is None else "zeros"
    inputs, source_inputs = common.make_input(shape, input_tensor)
    x = inputs
    features = {}
    for endpoint, op in STEM:
        if isinstance(op, Conv):
            x = _conv_bn(x, depth(op.filters), op.kernel, op.strides, op.padding, endpoint, output_name=endpoint,
                         initializer=initializer)
        else:
            x = _pool(x, op, endpoint)
        features[endpoint] = x
        if endpoint == final_endpoint:
            break
    else:
        for block, branches in MIXED:
            outputs = [_apply_branch(x, ops, f"{block}/{branch}", depth, initializer) for branch, ops in branches]
            x = keras.layers.Concatenate(name=block)(outputs)
            features[block] = x
            if block == final_endpoint:
                break

    model = common.model_with_top(inputs, source_inputs, x, include_top=include_top, pooling=pooling,
                                  classes=classes, classifier_activation=classifier_activation,
                                  initializer=initializer, name=name, pool_name="AvgPool_1a",
                                  dropout=(dropout_rate, "PreLogits"))
    if aux_logits:
        aux = _aux_head(features[AUX_INPUT], classes, depth)
        model = KerasnetsModel(model.inputs[0] if len(model.inputs) == 1 else model.inputs, [model.output, aux],
                            name=name)
    weights_lib.load(model, source, SLIM_LAYOUT, KERAS_APPLICATIONS_LAYOUT)
    return model


def _aux_head(x, classes, depth):
    """slim's auxiliary classifier on Mixed_6e (section 4 of the paper)."""
    x = keras.layers.AveragePooling2D(5, strides=3, padding="valid", name="AuxLogits.AvgPool_1a_5x5")(x)
    x = _conv_bn(x, depth(128), 1, 1, "same", "AuxLogits/Conv2d_1b_1x1")
    # slim shrinks the 5x5 kernel when the map is smaller (and names the scope after it).
    kernel = tuple(5 if d is None else min(d, 5) for d in x.shape[1:3])
    x = _conv_bn(x, depth(768), kernel, 1, "valid", "AuxLogits/Conv2d_2a_{}x{}".format(*kernel))
    x = keras.layers.Conv2D(classes, 1, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.001),
                            name="AuxLogits.Conv2d_2b_1x1")(x)
    # A 1x1 map at the default size (slim squeezes); larger inputs average like global_pool.
    # (The aux head keeps its initializers: keras.applications' files do not have it.)
    return keras.layers.GlobalAveragePooling2D(dtype="float32", name="AuxLogits")(x)


# How our layers' variables are named in the two foreign layouts (see weights.py).
SLIM_LAYOUT = weights_lib.SlimLayout(
    scope="InceptionV3",
    # Keras layer name -> slim scope, where the rule "." -> "/" does not give it.
    renamed={"Logits": "Logits/Conv2d_1c_1x1", "AuxLogits.Conv2d_2b_1x1": "AuxLogits/Conv2d_2b_1x1"},
    optional_prefixes=("AuxLogits",),
)
# keras.applications creates its 94 conv/batch-norm pairs in slim's order and
# leaves them unnamed: conv2d_<i> and batch_normalization_<i> belong to the i-th slim scope.
KERAS_APPLICATIONS_LAYOUT = weights_lib.KerasApplicationsLayout(table={
    **{f"conv2d_{i}": conv_layer_name(s) for i, s in enumerate(conv_scopes(), start=1)},
    **{f"batch_normalization_{i}": f"{s.replace('/', '.')}.BatchNorm" for i, s in enumerate(conv_scopes(), start=1)},
    "predictions": "Logits",
})


def preprocess_input(x, data_format=None):
    """Scales RGB pixels in [0, 255] to [-1, 1], as Inception v3 was trained."""
    return keras.applications.imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


def decode_predictions(preds, top=5):
    """keras.applications' decoder; a 1001-class (slim) output drops the background column."""
    if preds.shape[-1] == 1001:
        preds = preds[..., 1:]
    return keras.applications.imagenet_utils.decode_predictions(preds, top=top)


CONFIG = registry.register(registry.ModelConfig(
    name="inception_v3",
    builder=inception_v3,
    default_size=DEFAULT_SIZE,
    min_size=MIN_SIZE,
    preprocessing="tf",
    classes=1000,
    paper="https://arxiv.org/abs/1512.00567",
    weights=registry.keras_applications_weights("inception_v3/inception_v3", "9a0d58056eeedaa3f26cb7ebd46da564",
                                                "bcbd6486424b2319ff4ef7d526e38f63"),
))
