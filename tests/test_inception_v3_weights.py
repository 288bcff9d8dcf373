"""Inception v3 weight loading against independent references.

keras.applications.InceptionV3 is the reference network: it gets random
weights (batch-norm statistics included), which are written in its published
legacy HDF5 layout and, under TF-slim's variable names, as a TF checkpoint.
"""

import dataclasses
import hashlib
import importlib
import logging
import os
import shutil
import warnings

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets import registry
from weight_files import randomize, rel_max_diff, write_keras_applications_h5, write_slim_checkpoint

SIZE = 150  # small input keeps CI fast; every layer is still exercised
SHAPE = (SIZE, SIZE, 3)

# TF-slim's inception_v3 convolution scopes in creation order, typed from
# nets/inception_v3.py (an independent copy of the table kerasnets derives).
SLIM_CONV_SCOPES = (
    "Conv2d_1a_3x3 Conv2d_2a_3x3 Conv2d_2b_3x3 Conv2d_3b_1x1 Conv2d_4a_3x3 "
    + " ".join(f"Mixed_5b/{s}" for s in "Branch_0/Conv2d_0a_1x1 Branch_1/Conv2d_0a_1x1 Branch_1/Conv2d_0b_5x5 "
               "Branch_2/Conv2d_0a_1x1 Branch_2/Conv2d_0b_3x3 Branch_2/Conv2d_0c_3x3 Branch_3/Conv2d_0b_1x1".split())
    + " " + " ".join(f"Mixed_5c/{s}" for s in "Branch_0/Conv2d_0a_1x1 Branch_1/Conv2d_0b_1x1 Branch_1/Conv_1_0c_5x5 "
                     "Branch_2/Conv2d_0a_1x1 Branch_2/Conv2d_0b_3x3 Branch_2/Conv2d_0c_3x3 Branch_3/Conv2d_0b_1x1".split())
    + " " + " ".join(f"Mixed_5d/{s}" for s in "Branch_0/Conv2d_0a_1x1 Branch_1/Conv2d_0a_1x1 Branch_1/Conv2d_0b_5x5 "
                     "Branch_2/Conv2d_0a_1x1 Branch_2/Conv2d_0b_3x3 Branch_2/Conv2d_0c_3x3 Branch_3/Conv2d_0b_1x1".split())
    + " " + " ".join(f"Mixed_6a/{s}" for s in "Branch_0/Conv2d_1a_1x1 Branch_1/Conv2d_0a_1x1 Branch_1/Conv2d_0b_3x3 "
                     "Branch_1/Conv2d_1a_1x1".split())
    + " " + " ".join(f"{m}/{s}" for m in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")
                     for s in "Branch_0/Conv2d_0a_1x1 Branch_1/Conv2d_0a_1x1 Branch_1/Conv2d_0b_1x7 Branch_1/Conv2d_0c_7x1 "
                     "Branch_2/Conv2d_0a_1x1 Branch_2/Conv2d_0b_7x1 Branch_2/Conv2d_0c_1x7 Branch_2/Conv2d_0d_7x1 "
                     "Branch_2/Conv2d_0e_1x7 Branch_3/Conv2d_0b_1x1".split())
    + " " + " ".join(f"Mixed_7a/{s}" for s in "Branch_0/Conv2d_0a_1x1 Branch_0/Conv2d_1a_3x3 Branch_1/Conv2d_0a_1x1 "
                     "Branch_1/Conv2d_0b_1x7 Branch_1/Conv2d_0c_7x1 Branch_1/Conv2d_1a_3x3".split())
    + " " + " ".join(f"Mixed_7b/{s}" for s in "Branch_0/Conv2d_0a_1x1 Branch_1/Conv2d_0a_1x1 Branch_1/Conv2d_0b_1x3 "
                     "Branch_1/Conv2d_0b_3x1 Branch_2/Conv2d_0a_1x1 Branch_2/Conv2d_0b_3x3 Branch_2/Conv2d_0c_1x3 "
                     "Branch_2/Conv2d_0d_3x1 Branch_3/Conv2d_0b_1x1".split())
    + " " + " ".join(f"Mixed_7c/{s}" for s in "Branch_0/Conv2d_0a_1x1 Branch_1/Conv2d_0a_1x1 Branch_1/Conv2d_0b_1x3 "
                     "Branch_1/Conv2d_0c_3x1 Branch_2/Conv2d_0a_1x1 Branch_2/Conv2d_0b_3x3 Branch_2/Conv2d_0c_1x3 "
                     "Branch_2/Conv2d_0d_3x1 Branch_3/Conv2d_0b_1x1".split())
).split()
# keras.applications' names of the inception modules.
KERAS_MIXED = {f"mixed{i}": name for i, name in enumerate(
    "Mixed_5b Mixed_5c Mixed_5d Mixed_6a Mixed_6b Mixed_6c Mixed_6d Mixed_6e Mixed_7a Mixed_7b Mixed_7c".split())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """keras.applications InceptionV3 (logits out) with random weights, and its files."""
    root = tmp_path_factory.mktemp("inception_v3_weights")
    model = randomize(keras.applications.InceptionV3(weights=None, input_shape=SHAPE, classifier_activation=None))
    top = write_keras_applications_h5(model, str(root / "top.h5"))
    notop = write_keras_applications_h5(model, str(root / "notop.h5"), skip=("avg_pool", "predictions"))
    images = np.random.default_rng(1).uniform(-1, 1, (2,) + SHAPE).astype("float32")
    features = keras.Model(model.input, {name: model.get_layer(k).output for k, name in KERAS_MIXED.items()}
                           | {"avg_pool": model.get_layer("avg_pool").output, "Logits": model.output})
    return dict(model=model, top=top, notop=notop, root=root, images=images,
                expected={k: np.asarray(v) for k, v in features(images).items()})


def slim_variables(model, classes=1001, aux=None):
    """The reference model's numbers under TF-slim's names (classifier with background row 0)."""
    convs = sorted((l for l in model.layers if l.name.startswith("conv2d")), key=_order)
    norms = sorted((l for l in model.layers if l.name.startswith("batch_normalization")), key=_order)
    assert len(convs) == len(norms) == len(SLIM_CONV_SCOPES) == 94
    variables = {}
    for scope, conv, norm in zip(SLIM_CONV_SCOPES, convs, norms):
        variables[f"InceptionV3/{scope}/weights"] = conv.get_weights()[0]
        beta, mean, var = norm.get_weights()
        variables.update({f"InceptionV3/{scope}/BatchNorm/beta": beta,
                          f"InceptionV3/{scope}/BatchNorm/moving_mean": mean,
                          f"InceptionV3/{scope}/BatchNorm/moving_variance": var})
    kernel, bias = model.get_layer("predictions").get_weights()
    rng = np.random.default_rng(7)
    if classes == 1001:
        kernel = np.concatenate([rng.normal(0, 0.05, (2048, 1)).astype("float32"), kernel], axis=1)
        bias = np.concatenate([[0.25], bias]).astype("float32")
    variables["InceptionV3/Logits/Conv2d_1c_1x1/weights"] = kernel.reshape(1, 1, 2048, classes)
    variables["InceptionV3/Logits/Conv2d_1c_1x1/biases"] = bias
    variables["global_step"] = np.array(1000, dtype="int64")
    variables.update(aux or {})
    return variables


def _order(layer):
    tail = layer.name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def aux_variables(classes=1001, seed=3):
    rng = np.random.default_rng(seed)
    shapes = {"Conv2d_1b_1x1/weights": (1, 1, 768, 128), "Conv2d_2a_5x5/weights": (5, 5, 128, 768),
              "Conv2d_2b_1x1/weights": (1, 1, 768, classes), "Conv2d_2b_1x1/biases": (classes,)}
    variables = {f"InceptionV3/AuxLogits/{k}": rng.normal(0, np.sqrt(2 / np.prod(s[:-1])) if len(s) > 1 else 0.1,
                                                        s).astype("float32") for k, s in shapes.items()}
    for scope, depth in (("Conv2d_1b_1x1", 128), ("Conv2d_2a_5x5", 768)):
        variables[f"InceptionV3/AuxLogits/{scope}/BatchNorm/beta"] = rng.normal(0, 0.2, depth).astype("float32")
        variables[f"InceptionV3/AuxLogits/{scope}/BatchNorm/moving_mean"] = rng.normal(0, 0.2, depth).astype("float32")
        variables[f"InceptionV3/AuxLogits/{scope}/BatchNorm/moving_variance"] = rng.uniform(
            0.5, 1.5, depth).astype("float32")
    return variables


def ours_features(model, images):
    names = [n for n in KERAS_MIXED.values() if n in kerasnets.endpoints(model)]
    extractor = kerasnets.feature_extractor(model, names + ["Logits"])
    return {k: np.asarray(v) for k, v in extractor(images).items()}


def test_keras_applications_file_with_top_matches_keras_applications(reference):
    model = kerasnets.inception_v3(weights=reference["top"], input_shape=SHAPE, classifier_activation=None)
    got = ours_features(model, reference["images"])
    for name in KERAS_MIXED.values():
        assert rel_max_diff(got[name], reference["expected"][name]) <= 1e-5, name
    assert rel_max_diff(got["Logits"], reference["expected"]["Logits"]) <= 1e-5
    assert rel_max_diff(model.predict(reference["images"], verbose=0), reference["expected"]["Logits"]) <= 1e-5


def test_keras_applications_notop_file_matches_keras_applications(reference):
    expected = keras.applications.InceptionV3(include_top=False, weights=reference["notop"], input_shape=SHAPE,
                                              pooling="avg").predict(reference["images"], verbose=0)
    np.testing.assert_allclose(expected, reference["expected"]["avg_pool"], rtol=1e-5, atol=1e-6)
    model = kerasnets.inception_v3(include_top=False, weights=reference["notop"], input_shape=SHAPE, pooling="avg")
    assert rel_max_diff(model.predict(reference["images"], verbose=0), expected) <= 1e-5


def test_notop_file_cannot_fill_the_top(reference):
    with pytest.raises(ValueError, match="no weights for layer .Logits.*include_top=False"):
        kerasnets.inception_v3(weights=reference["notop"], input_shape=SHAPE)


def test_slim_checkpoint_1001_classes_equals_reference(reference, tmp_path):
    variables = slim_variables(reference["model"])
    prefix = write_slim_checkpoint(str(tmp_path / "inception_v3.ckpt"), variables)
    model = kerasnets.inception_v3(weights=prefix, input_shape=SHAPE, classes=1001, classifier_activation=None)
    got = ours_features(model, reference["images"])
    for name in KERAS_MIXED.values():
        assert rel_max_diff(got[name], reference["expected"][name]) <= 1e-5, name
    assert rel_max_diff(got["Logits"][:, 1:], reference["expected"]["Logits"]) <= 1e-5
    kernel = variables["InceptionV3/Logits/Conv2d_1c_1x1/weights"].reshape(2048, 1001)
    background = reference["expected"]["avg_pool"] @ kernel[:, 0] + 0.25
    np.testing.assert_allclose(got["Logits"][:, 0], background, rtol=1e-4, atol=1e-4)


def test_slim_checkpoint_1000_classes_drops_background(reference, tmp_path, caplog):
    prefix = write_slim_checkpoint(str(tmp_path / "ckpt"), slim_variables(reference["model"], aux=aux_variables()))
    with caplog.at_level(logging.INFO, logger="kerasnets"):
        model = kerasnets.inception_v3(weights=prefix, input_shape=SHAPE, classifier_activation=None)
    assert rel_max_diff(model.predict(reference["images"], verbose=0), reference["expected"]["Logits"]) <= 1e-5
    # The aux head's variables are reported by name as skipped.
    assert "InceptionV3/AuxLogits/Conv2d_1b_1x1" in caplog.text


def test_slim_checkpoint_loads_aux_head(reference, tmp_path):
    aux = aux_variables()
    prefix = write_slim_checkpoint(str(tmp_path / "ckpt"), slim_variables(reference["model"], aux=aux))
    model = kerasnets.inception_v3(weights=prefix, input_shape=(299, 299, 3), classes=1001, aux_logits=True)
    images = np.random.default_rng(5).uniform(-1, 1, (1, 299, 299, 3)).astype("float32")
    _, aux_logits = model.predict(images, verbose=0)
    # Slim's aux head computed by hand from Mixed_6e of the reference network.
    import tensorflow as tf
    mixed_6e = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(299, 299, 3))
    mixed_6e.set_weights(reference["model"].get_weights()[:len(mixed_6e.get_weights())])
    x = keras.Model(mixed_6e.input, mixed_6e.get_layer("mixed7").output)(images)
    x = tf.nn.avg_pool2d(x, 5, 3, "VALID")

    def conv_bn(x, scope, padding):
        v = {k.rsplit("/", 1)[-1]: aux[f"InceptionV3/AuxLogits/{scope}/{k}"] for k in
             ("weights", "BatchNorm/beta", "BatchNorm/moving_mean", "BatchNorm/moving_variance")}
        x = tf.nn.conv2d(x, v["weights"], 1, padding)
        return tf.nn.relu((x - v["moving_mean"]) / tf.sqrt(v["moving_variance"] + 0.001) + v["beta"])

    x = conv_bn(conv_bn(x, "Conv2d_1b_1x1", "SAME"), "Conv2d_2a_5x5", "VALID")
    x = tf.nn.conv2d(x, aux["InceptionV3/AuxLogits/Conv2d_2b_1x1/weights"], 1, "SAME") \
        + aux["InceptionV3/AuxLogits/Conv2d_2b_1x1/biases"]
    expected = tf.squeeze(x, [1, 2]).numpy()
    assert aux_logits.shape == (1, 1001)
    assert rel_max_diff(aux_logits, expected) <= 1e-5


def test_slim_checkpoint_missing_variables_are_named(reference, tmp_path):
    variables = slim_variables(reference["model"])
    del variables["InceptionV3/Mixed_6b/Branch_2/Conv2d_0c_1x7/BatchNorm/moving_mean"]
    prefix = write_slim_checkpoint(str(tmp_path / "ckpt"), variables)
    with pytest.raises(ValueError, match="Mixed_6b/Branch_2/Conv2d_0c_1x7/BatchNorm/moving_mean"):
        kerasnets.inception_v3(weights=prefix, input_shape=SHAPE, classes=1001)


def test_slim_checkpoint_aux_missing_is_named(reference, tmp_path):
    prefix = write_slim_checkpoint(str(tmp_path / "ckpt"), slim_variables(reference["model"]))
    with pytest.raises(ValueError, match="AuxLogits/Conv2d_1b_1x1/weights"):
        kerasnets.inception_v3(weights=prefix, classes=1001, aux_logits=True)


def test_imagenet_fetches_published_file_with_hash_check(reference, monkeypatch):
    """weights='imagenet' goes through keras.utils.get_file with the MD5; the file is put in the cache."""
    config = registry.get_config("inception_v3")
    entry = config.weights_file("imagenet", include_top=True)
    cached = os.path.join(os.environ["KERAS_HOME"], "models", entry.filename)
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    shutil.copy(reference["top"], cached)
    md5 = hashlib.md5(open(cached, "rb").read()).hexdigest()
    monkeypatch.setitem(registry._REGISTRY, "inception_v3",
                        with_imagenet_files(config, dataclasses.replace(entry, md5=md5)))
    model = kerasnets.inception_v3(weights="imagenet", input_shape=SHAPE, classifier_activation=None)
    assert rel_max_diff(model.predict(reference["images"], verbose=0), reference["expected"]["Logits"]) <= 1e-5


def test_imagenet_hash_mismatch_is_refused(reference, monkeypatch, tmp_path):
    config = registry.get_config("inception_v3")
    entry = config.weights_file("imagenet", include_top=False)
    origin = tmp_path / "origin" / entry.filename
    origin.parent.mkdir()
    shutil.copy(reference["notop"], origin)
    bad = dataclasses.replace(entry, url=origin.as_uri(), md5="0" * 32)
    monkeypatch.setitem(registry._REGISTRY, "inception_v3", with_imagenet_files(config, bad))
    with pytest.raises(ValueError, match="(?i)corrupt|hash"):
        kerasnets.inception_v3(weights="imagenet", include_top=False, input_shape=SHAPE)


def with_imagenet_files(config, *files):
    """`config` whose "imagenet" weights are `files`."""
    imagenet = dataclasses.replace(config.pretrained("imagenet"), files=files)
    return dataclasses.replace(config, weights=(imagenet,))


@pytest.mark.parametrize("name", ["inception_v3", "xception"])
def test_published_files_are_keras_applications_ones(name):
    """URL and MD5 as keras.applications' own source has them (top first, then without)."""
    import inspect
    import re

    source = importlib.import_module(f"keras.src.applications.{name}")
    hashes = re.findall(r'file_hash="([0-9a-f]{32})"', inspect.getsource(source))
    config = registry.get_config(name)
    top, notop = config.weights_file("imagenet", True), config.weights_file("imagenet", False)
    assert (top.url, notop.url) == (source.WEIGHTS_PATH, source.WEIGHTS_PATH_NO_TOP)
    assert [top.md5, notop.md5] == hashes


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_keras3_files_round_trip_exactly(tmp_path, suffix):
    kwargs = dict(depth_multiplier=0.25, input_shape=(112, 112, 3), classes=7, aux_logits=True)
    model = randomize(kerasnets.inception_v3(**kwargs), seed=11)
    path = str(tmp_path / f"model{suffix}")
    (model.save_weights if suffix == ".weights.h5" else model.save)(path)
    loaded = kerasnets.inception_v3(weights=path, **kwargs)
    images = np.random.default_rng(2).uniform(-1, 1, (2, 112, 112, 3)).astype("float32")
    for a, b in zip(model.predict(images, verbose=0), loaded.predict(images, verbose=0)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.weights, loaded.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_file_of_another_depth_names_first_layer(reference):
    with pytest.raises(ValueError, match=r"Conv2d_1a_3x3\.Conv2D"):
        kerasnets.inception_v3(weights=reference["top"], input_shape=SHAPE, depth_multiplier=0.5)


def test_weights_file_of_another_architecture(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(scale=False)(x)
    other = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(keras.layers.Flatten()(x)))
    path = write_keras_applications_h5(other, str(tmp_path / "other.h5"))
    with pytest.raises(ValueError, match="has no weights for layer 'Conv2d_2a_3x3.Conv2D'.*another architecture"):
        kerasnets.inception_v3(weights=path)


def test_missing_weights_file():
    with pytest.raises(FileNotFoundError, match="weights='/no/such/file.h5'"):
        kerasnets.inception_v3(weights="/no/such/file.h5")


def test_corrupt_weights_file(tmp_path):
    path = tmp_path / "corrupt.h5"
    path.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        kerasnets.inception_v3(weights=str(path))


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "ckpt.index").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable TF checkpoint"):
        kerasnets.inception_v3(weights=str(tmp_path / "ckpt"))


def test_imagenet_argument_errors():
    with pytest.raises(ValueError, match="classes=10"):
        kerasnets.inception_v3(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="3 input channels"):
        kerasnets.inception_v3(weights="imagenet", include_top=False, input_shape=(299, 299, 1))
    with pytest.raises(TypeError, match="weights must be"):
        kerasnets.inception_v3(weights=3)


def test_keras3_file_of_another_model_names_the_layer(tmp_path):
    path = str(tmp_path / "small.weights.h5")
    kerasnets.inception_v3(depth_multiplier=0.25, include_top=False, input_shape=(75, 75, 3)).save_weights(path)
    with warnings.catch_warnings(record=True) as caught:  # one error, not a warning per layer first
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"does not fit.*Conv2d_2b_3x3\.Conv2D"):
            kerasnets.inception_v3(depth_multiplier=0.5, include_top=False, input_shape=(75, 75, 3), weights=path)
    assert [str(w.message)[:80] for w in caught] == []
    with pytest.raises(ValueError, match="does not fit.*Logits"):
        kerasnets.inception_v3(depth_multiplier=0.25, input_shape=(75, 75, 3), weights=path)
