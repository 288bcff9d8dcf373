"""kerasnets: classic CNN architectures for Keras 3, with TF-slim's endpoints and real weight loading.

The public names are imported on first use (PEP 562), so that `import kerasnets`
and the command line's `--help` and argument errors need no TensorFlow.
"""

import importlib
import importlib.util
import os

# TensorFlow switches its oneDNN CPU kernels on by itself only on some CPUs (AVX-512 VNNI/BF16, AMX); elsewhere, as
# on AVX2-only AMD EPYC, its own convolution input gradient is ~100x slower on 1x1 and 2x2 maps (ResNet-18 trains at
# 35 img/s instead of 214 at 32x32) and predict is 1.2-1.7x slower. TensorFlow reads this once, when it loads; a
# value the user set (0 turns it off) is kept. See precision.onednn_enabled and BENCHMARKS.md.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

# public name -> the module (under kerasnets.) that defines it
_NAMES = {
    "create_model": "registry", "get_config": "registry", "list_models": "registry",
    "endpoints": "features", "feature_extractor": "features",
    "inception_v1": "models.inception_v1", "googlenet": "models.inception_v1", "inception_v2": "models.inception_v2",
    "inception_v3": "models.inception_v3", "inception_v4": "models.inception_v4",
    "inception_resnet_v2": "models.inception_resnet_v2",
    "xception": "models.xception", "nin": "models.nin", "vgg16": "models.vgg", "vgg19": "models.vgg",
    **{name: "models.mobilenet_v1" for name in ("mobilenet_v1", "mobilenet_v1_100", "mobilenet_v1_075",
                                                "mobilenet_v1_050", "mobilenet_v1_025")},
    **{name: "models.resnext" for name in ("resnext50_32x4d", "resnext101_32x8d", "seresnet50", "seresnet101",
                                           "seresnet152", "seresnext50_32x4d", "seresnext101_32x4d")},
    **{name: "models.shufflenet_v2" for name in ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
                                                 "shufflenet_v2_x2_0")},
    **{name: "models.resnet" for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                          "resnet50_v2", "resnet101_v2", "resnet152_v2")},
    "preprocess_input": "imagenet", "decode_predictions": "imagenet",
    "KerasnetsModel": "model", "load_model": "model", "with_precision": "precision",
}
_SUBMODULES = ("analysis", "data", "export", "training", "precision", "recipes", "tflite_metadata", "models",
               "segmentation")
__all__ = [*_NAMES, *_SUBMODULES]


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"kerasnets.{_NAMES[name]}"), name)
    elif name in _SUBMODULES or (not name.startswith("_") and importlib.util.find_spec(f"kerasnets.{name}")):
        value = importlib.import_module(f"kerasnets.{name}")  # any other module too, e.g. kerasnets.registry
    else:
        raise AttributeError(f"module 'kerasnets' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
