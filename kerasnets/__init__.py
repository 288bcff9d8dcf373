"""kerasnets: classic CNN architectures for Keras 3, with TF-slim's endpoints and real weight loading.

The public names are imported on first use (PEP 562), so that `import kerasnets`
and the command line's `--help` and argument errors need no TensorFlow.
"""

import importlib
import importlib.util
import sys
import types

__version__ = "0.1.0"

# public name -> the module (under kerasnets.) that defines it
_NAMES = {
    "create_model": "registry", "get_config": "registry", "list_models": "registry",
    "endpoints": "common", "feature_extractor": "common",
    "inception_v3": "inception_v3", "xception": "xception", "nin": "nin",
    **{name: "resnet" for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                   "resnet50_v2", "resnet101_v2", "resnet152_v2")},
    # keras.applications style: Inception v3's; other models' via get_config(name).preprocess.
    "preprocess_input": "inception_v3", "decode_predictions": "inception_v3",
    "KerasnetsModel": "model", "load_model": "model", "with_precision": "precision",
}
_SUBMODULES = ("analysis", "data", "export", "training", "precision", "recipes", "tflite_metadata")
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


class _Package(types.ModuleType):
    """Keeps `kerasnets.inception_v3` (and xception, nin) the builder when its module is imported.

    Importing a submodule sets it as an attribute of its package; for the three
    modules named after their builder that would replace the function.
    """

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _NAMES.get(name) == name:
            return  # the module stays in sys.modules; __getattr__ answers with the builder
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
