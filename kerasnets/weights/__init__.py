"""Loading weights from the layouts users have.

One reader per format -- keras.applications' legacy HDF5 (`keras_applications`),
TF-slim checkpoints (`slim`), Keras 3 `.weights.h5` / `.keras` (`keras3`),
PyTorch state dicts in `.pth` or `.safetensors` (`pytorch`) --
and per-family layout tables (`layouts`: foreign name -> our layer name,
derived from the models' data; layouts import models, never the reverse).
Every shape is checked before any variable is assigned, so a wrong file
changes nothing and the error names the first layer that does not fit.
"""

import dataclasses
import os
import zipfile

import numpy as np


@dataclasses.dataclass(frozen=True)
class Source:
    """A weights file to load, and the layout it is written in (one of registry.LAYOUTS)."""

    layout: str
    path: str


def resolve(weights, config, include_top, input_shape=None):
    """Turns the `weights` argument into a Source, checking the file's format.

    Runs before the model is built. A published tag ("imagenet") fetches its
    file with `keras.utils.get_file`, which checks the published hash; where
    the set has a file per input size (MobileNet), the one for a square
    `input_shape`, else the default size's with a warning.
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights in config.weight_tags:
        import keras

        published = config.pretrained(weights)
        size = input_shape[0] if input_shape is not None and input_shape[0] == input_shape[1] else None
        entry = config.weights_file(weights, include_top, size)
        if len(published.input_sizes) > 1 and size not in published.input_sizes:
            import warnings

            warnings.warn(f"weights={weights!r}: {config.name} is published for square inputs of "
                          f"{list(published.input_sizes)}; got input_shape={tuple(input_shape)}, so the "
                          f"{published.input_size}x{published.input_size} weights are loaded.", stacklevel=4)
        # Keras' own cache (KERAS_HOME, else ~/.keras), named so a failed download can say where the file goes.
        cache = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        try:
            path = keras.utils.get_file(entry.filename, entry.url, cache_subdir="models", file_hash=entry.md5,
                                        cache_dir=cache, extract=bool(entry.member))
        except ValueError:  # a corrupted download (hash mismatch): Keras' message says so
            raise
        except Exception as e:  # Keras raises a bare Exception for network failures
            checked = f" (MD5 {entry.md5})" if entry.md5 else ""
            raise ConnectionError(
                f"weights={weights!r}: could not download {entry.url} ({e}). Offline, put the file{checked} "
                f"at {os.path.join(cache, 'models', entry.filename)} and run again") from None
        if entry.sha256_prefix:
            check_sha256_prefix(os.path.join(cache, "models", entry.filename), entry.sha256_prefix, weights)
        elif entry.md5 is None:
            _check_first_download(os.path.join(cache, "models", entry.filename), weights)
        if entry.member:  # an archive, extracted next to it
            path = os.path.join(path, entry.member)
        return Source(published.layout, path)
    path = os.fspath(weights)
    if os.path.isdir(path):
        import tensorflow as tf

        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            raise ValueError(f"weights={path!r} is a directory without a TF checkpoint")
        return Source("slim", prefix)
    if is_tf_checkpoint(path):
        return Source("slim", path)
    from kerasnets.weights import pytorch

    if pytorch.is_torch_file(path):
        return Source("torch", path)
    if path.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"weights={path!r} is not a readable .keras archive")
        return Source("keras3", path)
    import h5py

    try:
        with h5py.File(path, "r") as f:
            legacy = "layer_names" in f.attrs
            keras3 = "layers" in f or "vars" in f
    except OSError as e:
        raise ValueError(
            f"weights={path!r} is not a readable HDF5 weights file ({e}). Valid: a keras.applications "
            ".h5, a Keras .weights.h5/.keras file, or a TF checkpoint prefix."
        ) from None
    if legacy:
        return Source("keras_applications", path)
    if keras3:
        return Source("keras3", path)
    raise ValueError(f"weights={path!r} is HDF5 but neither keras.applications' layout nor a Keras 3 weights file")


def is_tf_checkpoint(path):
    """Whether `path` names a TF checkpoint (slim's layout): a directory holding one, or a prefix
    (`model.ckpt`, with `model.ckpt.index` beside it)."""
    return os.path.isdir(path) or (not os.path.exists(path) and os.path.exists(path + ".index"))


def _sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256_prefix(path, prefix, tag):
    """torchvision names each file after its SHA-256's first digits (`resnext50_32x4d-1a0047aa.pth`), as torch.hub
    checks it: a file whose digest starts otherwise is corrupt or another one."""
    digest = _sha256(path)
    if not digest.startswith(prefix):
        raise ValueError(f"weights={tag!r}: {path} has SHA-256 {digest[:16]}..., not the {prefix}... its publisher "
                         "named it after (a corrupted or replaced download); delete it to download it again")


def _check_first_download(path, tag):
    """For files published without a hash (TF-slim's archives, keras.applications' MobileNet): the SHA-256 of
    the first download is recorded beside it (`<file>.sha256`) and every later use is checked against it."""
    from kerasnets.output import atomic_write

    digest = _sha256(path)
    record = path + ".sha256"
    if not os.path.exists(record):
        atomic_write(record, lambda f: f.write(digest + "\n"))
    elif open(record).read().strip() != digest:
        raise ValueError(f"weights={tag!r}: {path} changed since it was first downloaded (its SHA-256 was recorded "
                         f"in {record}); delete both files to download it again")


def load(model, source, config):
    """Loads `source` into `model`, registered model `config` (a no-op for None)."""
    if source is None:
        return
    from kerasnets.weights import keras3, keras_applications, layouts, pytorch, slim

    if source.layout == "keras3":
        keras3.load(model, source.path, _assign)
        return
    table = layouts.layout(config.name, source.layout)
    if table is None:
        raise ValueError(f"weights={source.path!r}: model {config.name!r} has no {source.layout} layout "
                         f"(a {_FORMAT_NAMES[source.layout]}); it loads: {layouts.formats(config.name)}")
    reader = {"keras_applications": keras_applications.read, "slim": slim.read, "torch": pytorch.read}[source.layout]
    _assign(model, reader(model, source.path, table), source.path)


_FORMAT_NAMES = {"keras_applications": "keras.applications .h5 file", "slim": "TF-slim checkpoint",
                 "torch": "PyTorch state dict"}


def _as_shape(variable, value):
    """A fully connected kernel stored as a convolution's, or the reverse (VGG's fc6: 7x7x512x4096 in slim,
    25088x4096 in keras.applications): the same numbers, since Flatten reads (height, width, channels)."""
    shape = tuple(variable.shape)
    if (variable.name == "kernel" and {len(shape), value.ndim} == {2, 4} and shape[-1] == value.shape[-1]
            and int(np.prod(shape)) == value.size):
        return value.reshape(shape)
    return value


def _assign(model, arrays, path):
    """Checks every shape, then assigns: a mismatch leaves the model untouched."""
    checked = {}
    for layer_name, values in arrays.items():
        layer = model.get_layer(layer_name)
        if len(layer.weights) != len(values):
            raise ValueError(f"weights={path!r} does not fit this model: layer {layer_name!r} has "
                             f"{len(layer.weights)} variables, the file has {len(values)}.")
        values = [_as_shape(variable, value) for variable, value in zip(layer.weights, values)]
        for variable, value in zip(layer.weights, values):
            if tuple(variable.shape) != tuple(value.shape):
                raise ValueError(
                    f"weights={path!r} does not fit this model: layer {layer_name!r} expects "
                    f"{variable.path} of shape {tuple(variable.shape)}, the file has {tuple(value.shape)}."
                )
        checked[layer_name] = values
    for layer_name, values in checked.items():
        model.get_layer(layer_name).set_weights(values)


