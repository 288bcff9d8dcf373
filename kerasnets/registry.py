"""The registry: every model's facts and its published weights, as data.

Modelled on timm's registry and pretrained configs and torchvision's weight
enums: an entry says what input the model expects, which endpoints it has
(with their channels and reductions), how many parameters and multiply-adds it
has at its default size, and which published weights it can load (files with
URL and hash, the layout they are written in, class count, preprocessing,
input size, published accuracy and its source). Tools (CLI, training, export)
read these facts instead of hard-coding them, and `list_models` /
`kerasnets list` build nothing. The conformance suite checks every stored
count against the built model.
"""

import dataclasses
import difflib
import fnmatch
import importlib
import os
from typing import Callable, Optional, Tuple

from kerasnets.features import FeatureInfo

# keras.applications' imagenet_utils modes, and TF-slim's VGG mean subtraction ("rgb_mean").
PREPROCESSING_MODES = ("tf", "torch", "caffe", "rgb_mean")
LAYOUTS = ("keras_applications", "slim", "keras3", "torch")
TASKS = ("classification", "segmentation")


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One published file."""

    url: str
    md5: Optional[str]  # as the publisher gives it (keras.applications publishes MD5s; TF-slim none)
    include_top: bool
    member: str = ""  # for an archive: the path inside it to load (a TF-slim checkpoint prefix)
    input_size: Optional[int] = None  # the square input it was trained at, where a set has one file per size
    sha256_prefix: Optional[str] = None  # torchvision's: the first hex digits of the SHA-256, in the file's name
    saved_as: str = ""  # the name in the cache where the URL's own is not unique (the hub's `model.safetensors`)

    @property
    def filename(self):
        return self.saved_as or self.url.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    """One published set of weights for a model (torchvision's `Weights`, timm's pretrained cfg)."""

    tag: str  # what `weights=` takes, e.g. "imagenet"
    files: Tuple[WeightsFile, ...]  # with the classifier and without
    layout: str  # how the file names the variables: one of LAYOUTS
    classes: int = 1000
    label_offset: int = 0  # 1 where class 0 is a "background" class (TF-slim's 1001)
    preprocessing: str = "tf"
    input_size: int = 224
    top1: Optional[float] = None  # published ImageNet top-1 accuracy, percent
    top1_source: str = ""
    # The central crop top-1 was measured with, as a fraction of the resized image's shorter side (torchvision's
    # 224 of 256, timm's crop_pct); None where the publisher does not say.
    crop_fraction: Optional[float] = None

    def class_names(self, classes=None):
        """The name of each of a classifier's `classes` scores (default: the set's own number): ImageNet-1k's, after
        slim's "background" where the model keeps it; None for any other number of classes."""
        from kerasnets import imagenet

        classes = self.classes if classes is None else classes
        if classes == self.classes:
            return imagenet.class_names(background=bool(self.label_offset))
        if classes == self.classes - self.label_offset:  # a slim set built with classes=1000: background dropped
            return imagenet.class_names()
        return None

    @property
    def input_sizes(self):
        """The square inputs this set has its own files for (MobileNet's 128-224), else just `input_size`."""
        return tuple(sorted({entry.input_size or self.input_size for entry in self.files}))

    def file(self, include_top, input_size=None):
        """The file with or without the classifier, trained at `input_size` where there is one, else at the
        set's own `input_size` (as keras.applications' MobileNet falls back to 224)."""
        candidates = [entry for entry in self.files if entry.include_top == include_top]
        for size in (input_size, self.input_size):
            for entry in candidates:
                if (entry.input_size or self.input_size) == size:
                    return entry
        return None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a user (or a tool) needs to know about a registered model."""

    name: str
    builder: Callable
    family: str  # the module under kerasnets.models
    paper: str
    default_size: int
    min_size: int
    features: Tuple[FeatureInfo, ...]  # every endpoint, in network order, at the default size
    params: int  # with the classifier, at the default size
    macs: int
    classes: int = 1000
    preprocessing: str = "tf"  # the normalisation its published weights expect (training uses it too)
    weights: Tuple[PretrainedWeights, ...] = ()
    task: str = "classification"  # or "segmentation": a head (kerasnets.segmentation) on a backbone
    backbone: Optional[str] = None  # a segmentation head's default backbone; its `features` are the head's own

    @property
    def endpoints(self):
        return tuple(f.endpoint for f in self.features)

    @property
    def weight_tags(self):
        return tuple(w.tag for w in self.weights)

    def pretrained(self, tag):
        """The published weights named `tag`; ValueError naming the tags there are."""
        for entry in self.weights:
            if entry.tag == tag:
                return entry
        raise ValueError(f"weights={tag!r}: no published weights of that name for model {self.name!r}. "
                         f"Available: {list(self.weight_tags) or 'none'} (or the path of a weights file).")

    def weights_file(self, tag, include_top, input_size=None):
        """The published file for `tag`, with or without the classifier, for a square `input_size` if the
        set has files per size."""
        entry = self.pretrained(tag).file(include_top, input_size)
        if entry is None:
            raise ValueError(f"weights={tag!r}: no published file for model {self.name!r} "
                             f"with include_top={include_top}.")
        return entry

    def preprocessing_for(self, weights=None):
        """The normalisation `weights` expect: a published set's own (slim's VGG differs from keras.applications');
        for a TF checkpoint or a PyTorch state dict given by path, that of the published set in its layout
        (torchvision's GoogLeNet transforms its input to [-1, 1]; others take ImageNet mean/std); the model's
        own for anything else."""
        if isinstance(weights, str) and weights in self.weight_tags:
            return self.pretrained(weights).preprocessing
        from kerasnets.weights import is_tf_checkpoint, pytorch

        if isinstance(weights, (str, os.PathLike)) and is_tf_checkpoint(os.fspath(weights)):
            return next((w.preprocessing for w in self.weights if w.layout == "slim"), self.preprocessing)
        if isinstance(weights, (str, os.PathLike)) and pytorch.is_torch_file(weights):
            # that of the published PyTorch set (the layout it is written in); ImageNet mean/std otherwise
            return next((w.preprocessing for w in self.weights if w.layout == "torch"), "torch")
        return self.preprocessing

    def preprocess(self, x, weights=None):
        """The input normalisation of RGB pixels in [0, 255] for this model (and published `weights`)."""
        from kerasnets.layers.preprocessing import preprocess_input

        return preprocess_input(x, self.preprocessing_for(weights))


SLIM_ROOT = "http://download.tensorflow.org/models/"
SLIM_TABLE = "https://github.com/tensorflow/models/tree/master/research/slim#pre-trained-models"


def slim_weights(archive, checkpoint, *, input_size, top1, tag="imagenet", sizes=(), classes=1001,
                 preprocessing="tf"):
    """TF-slim's published checkpoint (an archive under SLIM_ROOT holding `checkpoint`): by default 1001 classes,
    class 0 "background", Inception preprocessing (pixels to [-1, 1]); top-1 as slim's README gives it (at
    `input_size`). With `sizes`, `archive` and `checkpoint` are formats taking `{size}`: one checkpoint each."""
    per_size = [(size, archive.format(size=size), checkpoint.format(size=size)) for size in sizes] or [
        (None, archive, checkpoint)]
    files = tuple(WeightsFile(f"{SLIM_ROOT}{path}", None, include_top=top, member=member, input_size=size)
                  for size, path, member in per_size for top in (True, False))
    return PretrainedWeights(tag=tag, files=files, layout="slim", classes=classes, label_offset=int(classes == 1001),
                             preprocessing=preprocessing, input_size=input_size, top1=top1, top1_source=SLIM_TABLE)


KERAS_APPLICATIONS_ROOT = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS_APPLICATIONS_TABLE = "https://keras.io/api/applications/"  # where keras.applications' top-1 are published


def keras_applications_weights(stem, top_md5, notop_md5, *, preprocessing, input_size, top1):
    """keras.applications' `imagenet` weights: `<stem>_weights_tf_dim_ordering_tf_kernels[_notop].h5`."""
    url = f"{KERAS_APPLICATIONS_ROOT}{stem}_weights_tf_dim_ordering_tf_kernels"
    return PretrainedWeights(
        tag="imagenet", layout="keras_applications", preprocessing=preprocessing, input_size=input_size,
        files=(WeightsFile(f"{url}.h5", top_md5, include_top=True),
               WeightsFile(f"{url}_notop.h5", notop_md5, include_top=False)),
        top1=top1, top1_source=KERAS_APPLICATIONS_TABLE)


TORCHVISION_ROOT = "https://download.pytorch.org/models/"
TORCHVISION_TABLE = "https://pytorch.org/vision/stable/models.html"  # torchvision's weights enums: acc@1
TIMM_TABLE = "https://github.com/huggingface/pytorch-image-models/blob/main/results/results-imagenet.csv"


def torchvision_weights(tag, filename, *, top1, input_size=224, resize_size=256, preprocessing="torch"):
    """torchvision's published state dict `filename` (`<name>-<first hex digits of its SHA-256>.pth`, checked
    after download); ImageNet mean/std preprocessing unless the model transforms its input itself
    (`transform_input`); evaluated as a central `input_size` crop of the image resized to `resize_size`; the same
    file with or without the classifier."""
    prefix = filename.rsplit("-", 1)[-1].split(".")[0]
    with_top = WeightsFile(f"{TORCHVISION_ROOT}{filename}", None, include_top=True, sha256_prefix=prefix)
    return PretrainedWeights(tag=tag, files=(with_top, dataclasses.replace(with_top, include_top=False)),
                             layout="torch", preprocessing=preprocessing, input_size=input_size, top1=top1,
                             top1_source=TORCHVISION_TABLE, crop_fraction=round(input_size / resize_size, 4))


def timm_weights(name, *, top1, input_size=224, crop_fraction=0.875):
    """timm's `name` (`<model>.<pretrained tag>`) from the Hugging Face hub, `weights="timm:<name>"`: its
    model.safetensors (the SHA-256 of the first download is recorded and checked after); top-1 at `input_size`
    from timm's results table; `crop_fraction`: its pretrained cfg's crop_pct."""
    with_top = WeightsFile(f"https://huggingface.co/timm/{name}/resolve/main/model.safetensors", None,
                           include_top=True, saved_as=f"timm_{name}.safetensors")
    return PretrainedWeights(tag=f"timm:{name}", files=(with_top, dataclasses.replace(with_top, include_top=False)),
                             layout="torch", preprocessing="torch", input_size=input_size, top1=top1,
                             top1_source=TIMM_TABLE, crop_fraction=crop_fraction)


_REGISTRY: dict = {}
_ALIASES: dict = {}  # another name people know a model by -> its registered name
_modules_imported = False


def _registry():
    """Imports the model families at the first lookup (not with the package: `kerasnets --help` needs no TF)."""
    global _modules_imported
    if not _modules_imported:
        from kerasnets.models import FAMILIES

        for family in FAMILIES:  # (a module imported twice registers once: Python caches it)
            importlib.import_module(f"kerasnets.models.{family}")
        importlib.import_module("kerasnets.segmentation")  # the heads, on any of the models above
        _modules_imported = True
    return _REGISTRY


def register(config: ModelConfig):
    """Adds a model to the registry; returns the config."""
    if config.name in _REGISTRY:
        raise ValueError(f"model {config.name!r} is already registered")
    if config.task not in TASKS:
        raise ValueError(f"{config.name}: task must be one of {TASKS}")
    if config.preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"{config.name}: preprocessing must be one of {PREPROCESSING_MODES}")
    for entry in config.weights:
        if entry.layout not in LAYOUTS or entry.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(f"{config.name}: weights {entry.tag!r} has an unknown layout or preprocessing")
    _REGISTRY[config.name] = config
    return config


def register_alias(alias, name):
    """`get_config(alias)` / `create_model(alias)` give model `name` (e.g. "googlenet" for "inception_v1")."""
    if alias in _REGISTRY or alias in _ALIASES:
        raise ValueError(f"{alias!r} is already a model name or alias")
    _ALIASES[alias] = name


def list_models(pattern: Optional[str] = None, pretrained: bool = False, task: Optional[str] = None):
    """Registered model names (not their aliases), sorted, filtered by an fnmatch `pattern` (e.g.
    "resnet*"); `pretrained=True` keeps those with published weights; `task` ("classification",
    "segmentation") keeps that kind. Builds nothing."""
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"pattern must be a string or None, got {pattern!r}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be None or one of {TASKS}, got task={task!r}")
    names = sorted(name for name, config in _registry().items()
                   if (config.weights or not pretrained) and task in (None, config.task))
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_config(name: str) -> ModelConfig:
    """The registry entry of `name`; ValueError naming the closest known names."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    try:
        return _registry()[_ALIASES.get(name, name)]
    except KeyError:
        close = difflib.get_close_matches(name, [*_REGISTRY, *_ALIASES], n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} Known models: {', '.join(list_models())}."
        ) from None


def create_model(name: str, **kwargs):
    """Builds the registered model `name` with the builder's keyword arguments."""
    return get_config(name).builder(**kwargs)
