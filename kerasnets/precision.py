"""Numeric precision by hardware, for training and for inference.

`auto` picks what the hardware runs natively (Micikevicius et al. 2018, "Mixed
Precision Training"; Kalamkar et al. 2019 for bfloat16):

* float16 compute on NVIDIA GPUs of compute capability 7.0 or more (tensor
  cores; Keras scales the loss);
* bfloat16 compute on CPUs with AVX512_BF16 or AMX-BF16 (oneDNN runs its
  convolutions and matmuls natively; no loss scaling needed);
* float32 otherwise.

Variables stay float32 (Keras' `mixed_*` policies) and the softmax runs in
float32, so a float32 model and its mixed copy hold the same weights.
"""

import os
import re

MODES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16", "off": "float32"}
CHOICES = ("auto", *MODES)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_FLOAT16_COMPUTE_CAPABILITY = (7, 0)


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return frozenset()
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return frozenset(match.group(1).split()) if match else frozenset()


def gpu_compute_capabilities():
    """(major, minor) of every visible GPU, as TensorFlow reports it."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        capabilities.append(tuple(capability) if capability else (0, 0))
    return capabilities


def resolve(mode="auto", *, gpus=None, flags=None):
    """The Keras dtype policy name for `mode`; `gpus`/`flags` default to this machine's."""
    if mode not in CHOICES:
        raise ValueError(f"mixed_precision must be one of {list(CHOICES)}, got mixed_precision={mode!r}")
    if mode != "auto":
        return MODES[mode]
    gpus = gpu_compute_capabilities() if gpus is None else gpus
    if gpus:
        return MODES["float16" if min(gpus) >= MIN_FLOAT16_COMPUTE_CAPABILITY else "off"]
    flags = cpu_flags() if flags is None else flags
    return MODES["bfloat16" if any(flag in flags for flag in BF16_CPU_FLAGS) else "off"]


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels (decided once, when TensorFlow was imported)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def onednn_hint():
    """A line for the user when oneDNN is off only because TensorFlow was imported before kerasnets, else None."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "1" or onednn_enabled():
        return None  # on, or turned off on purpose
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return None
    return ("TensorFlow was imported before kerasnets, with its oneDNN CPU kernels off: CPU training can be several "
            "times slower (see BENCHMARKS.md); import kerasnets first, or set TF_ENABLE_ONEDNN_OPTS=1 before "
            "TensorFlow loads")


def with_precision(model, mode="bfloat16", fold_batch_norms=None):
    """A copy of `model` that computes in `mode` ("bfloat16", "float16", "off" or "auto"), for inference.

    The output layers compute in float32, so outputs stay float32; variables
    are float32. `fold_batch_norms` (default: when the copy computes in
    bfloat16 or float16) folds each batch norm into the convolution before it
    (Jacob et al. 2018, as TFLite's converter does): the convolution's kernel
    is scaled by gamma / sqrt(variance + epsilon) and gains the bias beta -
    mean * that scale; the batch norm becomes an `Identity` layer of the same
    name, so layer names and endpoints stay. Without folding, the copy holds
    the original's weights, equal. Folding matters for bfloat16 on the CPU,
    where TensorFlow's element-wise kernels (the batch norm's multiply-add)
    run far below oneDNN's convolutions: on a CPU with AVX512_BF16 a float32
    model (e.g. a training run's `model.keras`) then predicts about twice as
    fast as in float32 (benchmarks/BENCHMARKS.md). A folded copy is for inference: it has no
    batch norms left to train.
    """
    import keras

    policy = resolve(mode)
    if fold_batch_norms is None:
        fold_batch_norms = policy != "float32"
    output_layers = set(model.output_names)
    folds = foldable_batch_norms(model) if fold_batch_norms else {}
    folded_convolutions = {conv: norm for norm, conv in folds.items()}

    def clone(layer):
        if layer.name in folds:
            return keras.layers.Identity(name=layer.name, dtype="float32" if layer.name in output_layers else policy)
        config = layer.get_config()
        if layer.name in folded_convolutions:
            config["use_bias"] = True
        if isinstance(layer, keras.layers.Layer) and not isinstance(layer, keras.layers.InputLayer):  # (not keras.ops)
            config["dtype"] = "float32" if layer.name in output_layers else policy
        return layer.__class__.from_config(config)

    from kerasnets.model import with_fast_predict

    def call(layer, inputs, *args, **kwargs):  # (an Identity takes no `training` or `mask`)
        return layer(inputs) if layer.name in folds else layer(inputs, *args, **kwargs)

    copy = keras.models.clone_model(model, clone_function=clone, call_function=call if folds else None)
    for layer in model.layers:
        if layer.name in folded_convolutions:
            copy.get_layer(layer.name).set_weights(
                _folded_weights(layer, model.get_layer(folded_convolutions[layer.name])))
        elif layer.name not in folds and layer.weights:
            copy.get_layer(layer.name).set_weights(layer.get_weights())
    return with_fast_predict(copy) if type(copy).__name__ == "Functional" else copy


def foldable_batch_norms(model):
    """{batch norm's name: convolution's name} for every batch norm over the channels that alone reads a
    convolution's output (linear: no activation of its own, called once; no LoRA weights)."""
    import keras

    from kerasnets import graph

    foldable = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    members = {op.name: op for op in model.operations}  # (also operations that are not layers: keras.ops)
    returned = set(model.output_names)  # a convolution whose output the model returns must keep it
    folds = {}
    for layer in model.layers:
        sources = graph.parents(layer)
        if not isinstance(layer, keras.layers.BatchNormalization) or len(sources) != 1:  # one call, one input
            continue
        source = sources[0]
        if (isinstance(source, foldable) and len(graph.parents(source)) == 1
                and layer.axis in (-1, len(layer.input.shape) - 1) and source.data_format == "channels_last"
                and source.get_config().get("activation") == "linear" and not getattr(source, "lora_enabled", False)
                and source.name not in returned and graph.children(source, members) == [layer]):
            folds[layer.name] = source.name
    return folds


def _folded_weights(convolution, norm):
    """The convolution's weights with the batch norm `norm` folded in: [kernel(s)..., bias]."""
    import keras
    import numpy as np

    mean, variance = (np.asarray(v, "float64") for v in (norm.moving_mean, norm.moving_variance))
    gamma = np.asarray(norm.gamma, "float64") if norm.scale else 1.0
    beta = np.asarray(norm.beta, "float64") if norm.center else 0.0
    scale = gamma / np.sqrt(variance + norm.epsilon)
    weights = [np.asarray(w, "float64") for w in convolution.get_weights()]
    bias = weights.pop() if convolution.use_bias else np.zeros_like(mean)
    kernel = weights[-1]  # Conv2D's kernel; SeparableConv2D's pointwise kernel (output channels last)
    if isinstance(convolution, keras.layers.DepthwiseConv2D):  # output channel = input channel * multiplier + m
        weights[-1] = kernel * scale.reshape(kernel.shape[2:])
    else:
        weights[-1] = kernel * scale
    return [w.astype("float32") for w in weights] + [((bias - mean) * scale + beta).astype("float32")]
