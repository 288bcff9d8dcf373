"""Writers of weight files in foreign layouts, independent of kerasnets' readers.

* `write_keras_applications_h5`: the legacy HDF5 layout of keras.applications'
  published files (root attribute `layer_names`, Keras-2 names counted from 1
  in creation order: conv2d_1 ... batch_normalization_94, predictions).
* `write_slim_checkpoint`: a TF checkpoint bundle with TF-slim's variable names
  (written with the same SaveV2 op TF1's Saver uses).
* `rel_max_diff`: how the tests compare what a loaded model computes with the source's.
"""

import collections
import re

import h5py
import keras
import numpy as np
import tensorflow as tf


def rel_max_diff(a, b):
    """max |a - b| relative to max |b|."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def randomize(model, seed=0):
    """Random weights, batch-norm statistics included, on a scale that keeps activations finite."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for variable, value in zip(layer.weights, layer.get_weights()):
            name = variable.name
            if name == "moving_variance":
                value = rng.uniform(0.5, 1.5, value.shape)
            elif name in ("moving_mean", "beta", "bias"):
                value = rng.normal(0.0, 0.2, value.shape)
            elif name == "gamma":
                value = rng.uniform(0.5, 1.5, value.shape)
            else:
                fan_in = int(np.prod(value.shape[:-1]))
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), value.shape)
            values.append(value.astype("float32"))
        if values:
            layer.set_weights(values)
    return model


# Layer kinds Keras names automatically (`conv2d`, `conv2d_1`, ...); explicit names are kept.
AUTO_NAMED = ("conv2d", "batch_normalization", "activation", "max_pooling2d", "average_pooling2d")


def _number(name):
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def published_names(model):
    """Keras-2 names of `model`'s layers: <kind>_<i>, i counted from 1 in creation order."""
    kinds = collections.defaultdict(list)
    for layer in model.layers:
        kinds[re.sub(r"_\d+$", "", layer.name)].append(layer)
    names = {layer.name: layer.name for layer in model.layers}
    for kind in AUTO_NAMED:
        for rank, layer in enumerate(sorted(kinds[kind], key=lambda l: _number(l.name)), start=1):
            names[layer.name] = f"{kind}_{rank}"
    return names


def write_keras_applications_h5(model, path, skip=()):
    """Writes `model` (a keras.applications model) in the published legacy layout.

    `skip` leaves layers out, e.g. ("avg_pool", "predictions") for the `_notop` file.
    """
    names = published_names(model)
    layers = [layer for layer in model.layers if layer.name not in skip]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [names[layer.name].encode("utf8") for layer in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"
        for layer in layers:
            name = names[layer.name]
            group = f.create_group(name)
            # Keras 2 (which wrote the published files) named a depthwise convolution's kernel depthwise_kernel.
            keras2 = {"kernel": "depthwise_kernel"} if isinstance(layer, keras.layers.DepthwiseConv2D) else {}
            weight_names = [f"{name}/{keras2.get(v.name, v.name)}:0" for v in layer.weights]
            group.attrs["weight_names"] = [w.encode("utf8") for w in weight_names]
            for weight_name, value in zip(weight_names, layer.get_weights()):
                group.create_dataset(weight_name, data=value)
    return path


def write_slim_checkpoint(prefix, variables):
    """Writes {slim variable name: array} as a TF checkpoint bundle at `prefix`."""
    names = sorted(variables)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(variables[n]) for n in names],
    )
    return prefix
