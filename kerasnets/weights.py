"""Loading weights from the layouts users have.

* keras.applications' published legacy HDF5 files (`layer_names` at the root,
  layers named `conv2d_<i>`, `batch_normalization_<i>`, `predictions`);
* Keras 3 `.weights.h5` / `.keras` files written from a kerasnets model;
* TF-slim checkpoints (`InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/weights`).

Each foreign layout is described by a table (a `*Layout` object built by the
model's module); this file holds the one reader per format. Every shape is
checked before any variable is assigned, so a wrong file changes nothing and
the error names the first layer that does not fit.
"""

import dataclasses
import logging
import os
import re
import warnings
import zipfile
from typing import Mapping

import numpy as np

logger = logging.getLogger("kerasnets")

# Keras variable name -> slim variable name.
_SLIM_VARIABLE = {
    "kernel": "weights",
    "bias": "biases",
    "gamma": "gamma",
    "beta": "beta",
    "moving_mean": "moving_mean",
    "moving_variance": "moving_variance",
}


@dataclasses.dataclass(frozen=True)
class SlimLayout:
    """How a model's layers map to a TF-slim checkpoint.

    A layer `A.B.C` (or `A.B.C.Conv2D`) holds the variables of slim scope
    `<scope>/A/B/C`, unless `renamed` says otherwise; `optional_prefixes` are
    heads whose variables may be absent or skipped (slim's AuxLogits).
    Classifier layers accept slim's extra background class and drop it.
    """

    scope: str
    renamed: dict
    optional_prefixes: tuple = ()
    op_suffix: str = ".Conv2D"

    def slim_scope(self, layer_name):
        if layer_name in self.renamed:
            return f"{self.scope}/{self.renamed[layer_name]}"
        base = layer_name[: -len(self.op_suffix)] if layer_name.endswith(self.op_suffix) else layer_name
        return f"{self.scope}/{base.replace('.', '/')}"

    def is_classifier(self, layer_name):
        return layer_name in self.renamed


@dataclasses.dataclass(frozen=True)
class KerasApplicationsLayout:
    """keras.applications' file: `table` maps its layer names to ours.

    Layers keras.applications leaves unnamed get Keras' automatic names
    (`conv2d_7`, or `conv2d`, `conv2d_1`, ... from Keras 3), whose numbers are
    offset by whatever was built before; the reader renumbers each kind in
    `auto_named` 1, 2, ... in creation order, as the published files have them.
    """

    table: Mapping[str, str]
    auto_named: tuple = ("conv2d", "batch_normalization")


@dataclasses.dataclass(frozen=True)
class Source:
    kind: str  # "keras_applications_h5" | "keras3" | "slim_checkpoint"
    path: str


def resolve(weights, config, include_top):
    """Turns the `weights` argument into a Source, checking the file's format.

    Runs before the model is built. "imagenet" fetches the published file with
    `keras.utils.get_file`, which checks its MD5.
    """
    if weights is None:
        return None
    if weights == "imagenet":
        import keras

        entry = config.weights_file("imagenet", include_top)
        # Keras' own cache (KERAS_HOME, else ~/.keras), named so a failed download can say where the file goes.
        cache = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        try:
            path = keras.utils.get_file(entry.filename, entry.url, cache_subdir="models", file_hash=entry.md5,
                                        cache_dir=cache)
        except ValueError:  # a corrupted download (MD5 mismatch): Keras' message says so
            raise
        except Exception as e:  # Keras raises a bare Exception for network failures
            raise ConnectionError(
                f"weights='imagenet': could not download {entry.url} ({e}). Offline, put the file (MD5 {entry.md5}) "
                f"at {os.path.join(cache, 'models', entry.filename)} and run again") from None
        return Source("keras_applications_h5", path)
    path = os.fspath(weights)
    if os.path.isdir(path):
        import tensorflow as tf

        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            raise ValueError(f"weights={path!r} is a directory without a TF checkpoint")
        return Source("slim_checkpoint", prefix)
    if not os.path.exists(path) and os.path.exists(path + ".index"):
        return Source("slim_checkpoint", path)
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
        return Source("keras_applications_h5", path)
    if keras3:
        return Source("keras3", path)
    raise ValueError(f"weights={path!r} is HDF5 but neither keras.applications' layout nor a Keras 3 weights file")


def load(model, source, slim_layout=None, keras_applications_layout=None):
    """Loads `source` into `model` (a no-op for None)."""
    if source is None:
        return
    if source.kind == "keras3":
        _load_keras3(model, source.path)
        return
    if source.kind == "keras_applications_h5":
        arrays = _read_keras_applications(model, source.path, keras_applications_layout)
    else:
        arrays = _read_slim(model, source.path, slim_layout)
    _assign(model, arrays, source.path)


def _assign(model, arrays, path):
    """Checks every shape, then assigns: a mismatch leaves the model untouched."""
    for layer_name, values in arrays.items():
        layer = model.get_layer(layer_name)
        if len(layer.weights) != len(values):
            raise ValueError(f"weights={path!r} does not fit this model: layer {layer_name!r} has "
                             f"{len(layer.weights)} variables, the file has {len(values)}.")
        for variable, value in zip(layer.weights, values):
            if tuple(variable.shape) != tuple(value.shape):
                raise ValueError(
                    f"weights={path!r} does not fit this model: layer {layer_name!r} expects "
                    f"{variable.path} of shape {tuple(variable.shape)}, the file has {tuple(value.shape)}."
                )
    for layer_name, values in arrays.items():
        model.get_layer(layer_name).set_weights(values)


def _number(name):
    # Keras names the i-th layer of a kind `kind_i` (the first plain `kind` in Keras 3).
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def _canonical_names(names, auto_named):
    """Renumbers automatically named layers 1, 2, ... per kind, in creation order."""
    canonical = {name: name for name in names}
    for kind in auto_named:
        pattern = re.compile(rf"^{kind}(_\d+)?$")
        same_kind = sorted((n for n in names if pattern.match(n)), key=_number)
        for rank, name in enumerate(same_kind, start=1):
            canonical[name] = f"{kind}_{rank}"
    return canonical


def _read_keras_applications(model, path, layout):
    import h5py

    if layout is None:
        raise ValueError(f"weights={path!r}: model {model.name!r} has no keras.applications layout")
    with h5py.File(path, "r") as f:
        stored = {}
        for name in _attr_strings(f.attrs["layer_names"]):
            weight_names = _attr_strings(f[name].attrs.get("weight_names", []))
            if weight_names:
                stored[name] = {wn.split("/")[-1].split(":")[0]: np.asarray(f[name][wn]) for wn in weight_names}
    stored = {canonical: stored[name] for name, canonical in _canonical_names(list(stored), layout.auto_named).items()}
    extra = [name for name in stored if name not in layout.table]
    if extra:
        raise ValueError(
            f"weights={path!r} has layer(s) {extra[:3]} that {model.name!r} does not have in keras.applications' "
            "layout: the file is of another architecture."
        )
    present = {layer.name for layer in model.layers}
    arrays = {}
    for file_name, layer_name in layout.table.items():
        if layer_name not in present:
            continue  # the file's classifier for a model without top, or a truncated model
        if file_name not in stored:
            raise ValueError(
                f"weights={path!r} has no weights for layer {layer_name!r} (keras.applications' {file_name!r})"
                + ("; build with include_top=False or use the file with the top." if file_name == "predictions"
                   else ": the file is of another architecture.")
            )
        layer = model.get_layer(layer_name)
        try:
            arrays[layer_name] = [stored[file_name][v.name] for v in layer.weights]
        except KeyError as e:
            raise ValueError(
                f"weights={path!r}: keras.applications' {file_name!r} has no {e.args[0]!r} for layer {layer_name!r}"
            ) from None
    return arrays


def _attr_strings(values):
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_slim(model, prefix, layout):
    import tensorflow as tf

    if layout is None:
        raise ValueError(f"weights={prefix!r}: model {model.name!r} has no TF-slim layout")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:  # tf raises several types for unreadable checkpoints
        raise ValueError(f"weights={prefix!r} is not a readable TF checkpoint: {e}") from None
    shapes = reader.get_variable_to_shape_map()
    arrays, missing, used = {}, [], set()
    for layer in model.layers:
        if not layer.weights:
            continue
        scope = layout.slim_scope(layer.name)
        values = []
        for variable in layer.weights:
            slim_name = f"{scope}/{_SLIM_VARIABLE[variable.name]}"
            if slim_name not in shapes:
                missing.append(slim_name)
                continue
            used.add(slim_name)
            value = reader.get_tensor(slim_name)
            if value.ndim == 4 and len(variable.shape) == 2:
                value = value.reshape(value.shape[2:])  # slim's 1x1 convolution classifier as our Dense
            if layout.is_classifier(layer.name) and value.shape[-1] == variable.shape[-1] + 1:
                value = value[..., 1:]  # slim's class 0 is "background"
            values.append(value)
        arrays[layer.name] = values
    if missing:
        raise ValueError(
            f"weights={prefix!r} lacks {len(missing)} variable(s) this model needs, first: {missing[:5]} "
            "(a checkpoint of another architecture or depth?)"
        )
    extra = sorted(n for n in shapes if n.startswith(layout.scope + "/") and n not in used)
    if extra:
        logger.info("skipped %d checkpoint variable(s) the model does not have: %s%s", len(extra),
                    ", ".join(extra[:5]), " ..." if len(extra) > 5 else "")
    return arrays


def _load_keras3(model, path):
    if path.endswith(".keras"):
        _assign(model, _read_keras_archive(model, path), path)
        return
    # A `.weights.h5` file lists layers by kind and position, so a model that normalises raw pixels with a
    # weighted layer (caffe's channel flip, a 1x1 convolution) first tries the file on the network behind that
    # layer: the layout of a file saved from the bare builder.
    import keras

    from kerasnets.layers import PREPROCESS_NAME

    targets = [model]
    if any(layer.name == PREPROCESS_NAME and layer.weights for layer in model.layers):
        targets.insert(0, keras.Model(model.get_layer(PREPROCESS_NAME).output, model.outputs))
    errors = []
    for target in targets:
        try:
            return _load_weights_file(target, path)
        except ValueError as error:
            errors.append(error)
    raise ValueError(f"weights={path!r} does not fit model {model.name!r}: {errors[0]}")


def _load_weights_file(model, path):
    """`model.load_weights(path)`, with one ValueError for any mismatch."""
    # Keras warns once per part of the model the file has nothing for (dozens of lines for another
    # architecture), then raises or leaves those parts as initialised: either way, one error here.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as e:  # Keras raises ValueError/KeyError/OSError depending on the mismatch
            raise ValueError(str(e)) from None
    unfilled = [str(w.message) for w in caught if "retain their freshly-initialized weights" in str(w.message)]
    if unfilled:
        where = re.search(r"at '([^']+)'", unfilled[0])
        raise ValueError(f"{len(unfilled)} part(s) of the model found no weights in the file, first: "
                         f"{where.group(1) if where else unfilled[0]}")
    for w in caught:  # anything else Keras said is passed on
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _read_keras_archive(model, path):
    """Every weighted layer of `model`, by name, from the whole model saved in a `.keras` archive.

    By name rather than by position, so a trained classifier (e.g. a training
    run's model.keras, with its input normalisation and head) fills a backbone
    built without the top.
    """
    import keras

    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError/TypeError/KeyError depending on what is wrong
        raise ValueError(f"weights={path!r} is not a loadable .keras model: {e}") from None
    from kerasnets.layers import PREPROCESS_NAME

    available = {layer.name: layer for layer in source.layers}
    # The input normalisation is the model's own (a bare network's file has none), never the file's.
    wanted = [layer.name for layer in model.layers if layer.weights and layer.name != PREPROCESS_NAME]
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ValueError(f"weights={path!r} does not fit model {model.name!r}: the file has no layer "
                         f"{missing[0]!r} ({len(missing)} of {len(wanted)} weighted layers missing)")
    return {name: [keras.ops.convert_to_numpy(v) for v in available[name].weights] for name in wanted}
