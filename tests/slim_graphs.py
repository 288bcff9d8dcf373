"""TF-slim's own networks (tf-slim 1.1) as the reference: built in a TF1 graph, random weights, a checkpoint.

tf-slim 1.1 predates TF 2.21: its layers import `tf_keras.legacy_tf_layers` and
`ops.Tensor`. TF still ships the legacy layers slim needs for convolutions and
pooling (`tensorflow.python.keras.legacy_tf_layers`), so the names are aliased
to them here; batch norm runs slim's fused path (`_fused_batch_norm`, plain TF
ops), chosen by `zero_debias_moving_mean=True`, which changes nothing at
inference. Nothing here is imported by kerasnets.

tf-slim 1.1 holds Inception v1-v3, VGG and the ResNets; Inception v4,
Inception-ResNet v2 and MobileNet v1 are in tensorflow/models'
`research/slim/nets/`, which the package `tf-models-research-object-detection`
installs as `object_detection.nets` (installed without its dependencies:
tests/reference-nets.txt). Those modules import their siblings as `nets`.
"""

import glob
import importlib
import os
import sys
import tarfile
import types

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops, tensor


def _alias_legacy_layers():
    if not hasattr(ops, "Tensor"):
        ops.Tensor = tensor.Tensor
    if "tf_keras" in sys.modules:
        return
    package = types.ModuleType("tf_keras")
    package.__path__ = []
    sys.modules["tf_keras"] = package
    legacy = "tensorflow.python.keras.legacy_tf_layers"
    sys.modules["tf_keras.legacy_tf_layers"] = importlib.import_module(legacy)
    for name in ("base", "convolutional", "core", "pooling"):
        sys.modules[f"tf_keras.legacy_tf_layers.{name}"] = importlib.import_module(f"{legacy}.{name}")


def slim_module(name):
    """slim's `nets/<name>.py`: from tf-slim where it has it, else from tensorflow/models' copy."""
    _alias_legacy_layers()
    try:
        return importlib.import_module(f"tf_slim.nets.{name}")
    except ModuleNotFoundError:
        sys.modules.setdefault("nets", importlib.import_module("object_detection.nets"))
        return importlib.import_module(f"object_detection.nets.{name}")


def slim_arg_scope(is_training):
    """The arg_scope slim's full networks open around their base: batch norm and dropout in inference mode."""
    import tf_slim as slim

    return slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training)


def run_slim_net(net, arg_scope, images, checkpoint_prefix, seed=0, **kwargs):
    """Builds slim's `net(inputs, is_training=False, **kwargs)` under `arg_scope()`, gives every variable
    random values (batch-norm statistics too), saves them to `checkpoint_prefix` with TF1's Saver and
    returns ({endpoint: output on `images`}, logits)."""
    _alias_legacy_layers()
    import tf_slim as slim

    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.compat.v1.placeholder(tf.float32, (None,) + images.shape[1:])
        with slim.arg_scope(arg_scope()), slim.arg_scope([slim.batch_norm], zero_debias_moving_mean=True):
            logits, end_points = net(inputs, is_training=False, **kwargs)
        variables = tf.compat.v1.global_variables()
        values = {}
        for variable in variables:
            shape = variable.shape.as_list()
            name = variable.op.name
            if name.endswith("moving_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            elif name.endswith(("moving_mean", "beta", "biases")):
                value = rng.normal(0.0, 0.2, shape)
            else:
                value = rng.normal(0.0, np.sqrt(2.0 / max(int(np.prod(shape[:-1])), 1)), shape)
            # Fed as the initial value (what Variable.load does), all in one session.run: a run per variable
            # prepares the whole graph again each time (70 s of Inception-ResNet v2's 88 s).
            values[variable.initializer.inputs[1]] = value.astype("float32")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run([variable.initializer for variable in variables], values)
            outputs = session.run({**end_points, "__logits__": logits}, {inputs: images})
            tf.compat.v1.train.Saver(variables).save(session, checkpoint_prefix, write_meta_graph=False)
    logits = outputs.pop("__logits__")
    return outputs, logits


def pack_slim_archive(prefix, archive, member):
    """Packs the checkpoint at `prefix` as slim packs its downloads: `archive` (a .tar.gz/.tgz, its folder made
    here) holding the checkpoint's files under the prefix `member`."""
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    # gzip's fastest level: random weights do not compress, and level 9 took ~20 s on VGG-16's 553 MB
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for path in glob.glob(prefix + ".*"):
            tar.add(path, arcname=os.path.basename(path).replace(os.path.basename(prefix), member))
