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


def with_precision(model, mode="bfloat16"):
    """A copy of `model` that computes in `mode` ("bfloat16", "float16", "off" or "auto"), same weights.

    For inference: a float32 model (e.g. a training run's `model.keras`) runs
    1.5-2.1x as fast under bfloat16 on a CPU with AVX512_BF16 (resnet50,
    xception, inception_v3 at batch 16; benchmarks/BENCHMARKS.md). The output
    layers compute in float32, so outputs stay float32. The copy holds its own
    variables (float32), equal to the original's.
    """
    import keras

    policy = resolve(mode)
    output_layers = set(model.output_names)

    def clone(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = "float32" if layer.name in output_layers else policy
        return layer.__class__.from_config(config)

    from kerasnets.model import with_fast_predict

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return with_fast_predict(copy) if type(copy).__name__ == "Functional" else copy
