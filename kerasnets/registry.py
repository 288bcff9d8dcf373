"""A registry of model builders, with their pretrained weights described as data.

Modelled on timm's registry and torchvision's weight enums: every entry says
what input it expects, how to preprocess it, how many classes it predicts and
which published files it can load (URL and the MD5 keras.applications
publishes), so tools (CLI, training, export) never hard-code per-model facts.
"""

import dataclasses
import difflib
import fnmatch
import importlib
from typing import Callable, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One published weights file."""

    url: str
    md5: str
    include_top: bool

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a user (or a tool) needs to know about a registered model."""

    name: str
    builder: Callable
    default_size: int
    min_size: int
    preprocessing: str  # "tf": [-1, 1]; "caffe": BGR mean-subtracted; "torch": ImageNet std.
    classes: int
    paper: str
    # tag ("imagenet") -> files, one with the classifier and one without.
    weights: Mapping[str, tuple] = dataclasses.field(default_factory=dict)

    def preprocess(self, x):
        """The model's input normalisation of RGB pixels in [0, 255] (keras.applications' modes)."""
        import keras

        return keras.applications.imagenet_utils.preprocess_input(x, mode=self.preprocessing)

    def weights_file(self, tag, include_top):
        """The published file for `tag`, with or without the classifier."""
        for entry in self.weights.get(tag, ()):
            if entry.include_top == include_top:
                return entry
        raise ValueError(
            f"weights={tag!r}: no published file for model {self.name!r} "
            f"with include_top={include_top}. Available: {sorted(self.weights) or 'none'}."
        )


KERAS_APPLICATIONS_ROOT = "https://storage.googleapis.com/tensorflow/keras-applications/"


def keras_applications_weights(stem, top_md5, notop_md5):
    """{"imagenet": (top, notop)} for keras.applications' `<stem>_weights_tf_dim_ordering_tf_kernels[_notop].h5`."""
    url = f"{KERAS_APPLICATIONS_ROOT}{stem}_weights_tf_dim_ordering_tf_kernels"
    return {"imagenet": (WeightsFile(f"{url}.h5", top_md5, include_top=True),
                         WeightsFile(f"{url}_notop.h5", notop_md5, include_top=False))}


_REGISTRY: dict = {}
# The modules whose builders register themselves, imported at the first lookup (not with the
# package, so that `kerasnets --help` needs no TensorFlow).
MODEL_MODULES = ("inception_v3", "xception", "resnet", "nin")
_modules_imported = False


def _registry():
    global _modules_imported
    if not _modules_imported:
        for module in MODEL_MODULES:  # (a module imported twice registers once: Python caches it)
            importlib.import_module(f"kerasnets.{module}")
        _modules_imported = True
    return _REGISTRY


def register(config: ModelConfig):
    """Adds a model to the registry; returns the config."""
    if config.name in _REGISTRY:
        raise ValueError(f"model {config.name!r} is already registered")
    _REGISTRY[config.name] = config
    return config


def list_models(pattern: Optional[str] = None):
    """Registered model names, sorted, filtered by an fnmatch `pattern` (e.g. "resnet*")."""
    names = sorted(_registry())
    if pattern is None:
        return names
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string or None, got {pattern!r}")
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_config(name: str) -> ModelConfig:
    """The registry entry of `name`; ValueError naming the closest known names."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    try:
        return _registry()[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} Known models: {', '.join(list_models())}."
        ) from None


def create_model(name: str, **kwargs):
    """Builds the registered model `name` with the builder's keyword arguments."""
    return get_config(name).builder(**kwargs)
