"""The conformance suite: what every registered model must do, parametrised over `kerasnets.list_models()`.

A new family gets all of this by registering. Each model is built at its
smallest input (`min_size`) with random weights and checked for: named
layers and endpoints as its registry entry declares them (channels and
reductions too), truncation at every endpoint, `feature_extractor` by name
and by reduction, analysis rows that add up, `.weights.h5` and `.keras`
round trips with identical outputs (TensorFlow), the stored parameter and MAC counts at
the default size, and (one child process for all models) the same outputs
on JAX from the same files. Files, JAX and truncation at every endpoint are
checked on one representative per family, paper and endpoint list (see
`_representatives`). The segmentation heads are registered models too: each
is checked on its default backbone, and saved, loaded and run on JAX on the
smallest backbone (`HEAD_BACKBONE`).
"""

import re

import numpy as np
import pytest

import kerasnets
from kerasnets import analysis, features
from run_on_backend import run_on_jax
from weight_files import randomize

MODELS = kerasnets.list_models(task="classification")
HEADS = kerasnets.list_models(task="segmentation")
HEAD_BACKBONE = "mobilenet_v1_025"


def _representatives():
    """The smallest model of each family, paper and endpoint list. Its siblings (resnet101 beside resnet18,
    vgg19 beside vgg16, the wider MobileNets) have the same layer types and endpoints and differ only in counts
    and widths, so saving, loading, JAX and truncation at every endpoint are checked on it; every model gets the
    rest. This keeps the suite's time in bounds as families grow."""
    groups = {}
    for name in MODELS:
        config = kerasnets.get_config(name)
        groups.setdefault((config.family, config.paper, config.endpoints), []).append(config)
    return sorted(min(group, key=lambda c: c.params).name for group in groups.values()) + HEADS


REPRESENTATIVES = _representatives()


def small_shape(name):
    size = kerasnets.get_config(name).min_size
    return (size, size, 3) if name in MODELS else (2 * size, 2 * size, 3)


def small_kwargs(name):
    """Arguments of a small, logit-scoring build of `name` (a head on the smallest backbone)."""
    kwargs = dict(input_shape=small_shape(name), classifier_activation=None)
    return kwargs if name in MODELS else dict(kwargs, backbone=HEAD_BACKBONE)


def run(model, images):
    """One eager call: for one small batch, tracing a 150-layer network for `predict` costs more than running it."""
    return np.asarray(model(images, training=False))


def keras_auto_name(layer):
    """Whether `layer` carries a name Keras made up (`conv2d_3`, `batch_normalization`, `input_layer_1`)."""
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower().replace("2_d", "2d")
    return re.fullmatch(rf"{kind}(_\d+)?", layer.name) is not None or layer.name.startswith("input_layer")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: (model, images, outputs, .weights.h5 path, .keras path)} for the representatives: random weights
    written in both formats."""
    root = tmp_path_factory.mktemp("conformance")
    made = {}
    rng = np.random.default_rng(0)
    for i, name in enumerate(REPRESENTATIVES):
        model = randomize(kerasnets.create_model(name, **small_kwargs(name)), seed=i)
        images = rng.uniform(-1, 1, (2,) + small_shape(name)).astype("float32")
        weights_path, keras_path = str(root / f"{name}.weights.h5"), str(root / f"{name}.keras")
        model.save_weights(weights_path)
        model.save(keras_path)
        made[name] = (model, images, run(model, images), weights_path, keras_path)
    return made


@pytest.mark.parametrize("name", MODELS)
def test_layers_endpoints_and_features_are_as_declared(name, saved):
    config = kerasnets.get_config(name)
    if name in saved:
        model, images = saved[name][:2]
    else:
        model = kerasnets.create_model(name, input_shape=small_shape(name), classifier_activation=None)
        images = np.random.default_rng(0).uniform(-1, 1, (2,) + small_shape(name)).astype("float32")
    names = kerasnets.endpoints(model)
    assert len(names) == len(set(names))
    assert names[:len(config.endpoints)] == list(config.endpoints)
    # Then the classifier: its global pool and dropout (slim's names where slim has them), Logits, Predictions.
    head = names[len(config.endpoints):]
    assert head[-2:] == ["Logits", "Predictions"] and len(head) <= 4, head
    assert [layer.name for layer in model.layers if keras_auto_name(layer)] == []

    # Without the top, the endpoints are exactly the declared features: channels and reductions.
    bare = kerasnets.create_model(name, include_top=False, input_shape=small_shape(name))
    assert kerasnets.endpoints(bare) == list(config.endpoints)
    reductions = features.reductions(bare)
    assert [(f.endpoint, bare.get_layer(f.endpoint).output.shape[-1], reductions[f.endpoint])
            for f in config.features] == [(f.endpoint, f.channels, f.reduction) for f in config.features]

    # Truncated at every endpoint (a sibling of a representative: at the middle one): it ends there, with the
    # full network's shape there.
    truncations = list(enumerate(config.endpoints[:-1]))
    if name not in REPRESENTATIVES:
        truncations = truncations[len(truncations) // 2:][:1]
    for i, endpoint in truncations:
        truncated = kerasnets.create_model(name, include_top=False, input_shape=small_shape(name),
                                           final_endpoint=endpoint)
        assert kerasnets.endpoints(truncated) == list(config.endpoints[:i + 1]), endpoint
        assert truncated.output.shape == bare.get_layer(endpoint).output.shape, endpoint

    # Feature maps by name and by reduction (the deepest endpoint at each).
    wanted = sorted({f.reduction for f in config.features})
    deepest = {f.reduction: f.endpoint for f in config.features}
    by_reduction = kerasnets.feature_extractor(bare, reductions=wanted)
    assert list(by_reduction.output) == [deepest[r] for r in wanted]
    by_name = kerasnets.feature_extractor(bare, [config.endpoints[0], config.endpoints[-1]])
    maps = by_name(images)
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        e: (2,) + tuple(bare.get_layer(e).output.shape[1:]) for e in (config.endpoints[0], config.endpoints[-1])}
    with pytest.raises(ValueError, match=r"reductions=\(3,\).*no endpoint at reduction\(s\) \[3\]"):
        kerasnets.feature_extractor(bare, reductions=(3,))

    # Analysis: the rows add up to the totals.
    rows = analysis.summarize(model)
    total = rows[-1]
    assert total["params"] == model.count_params() == sum(r["params"] for r in rows[:-1])
    assert total["macs"] == sum(r["macs"] for r in rows[:-1]) > 0


@pytest.mark.parametrize("name", HEADS)
def test_heads_endpoints_and_features_are_as_declared(name, saved):
    """A head on its default backbone: the backbone's endpoints, then the head's as declared (channels and
    reductions), then per-pixel `Predictions` at the input's size; every layer named; analysis adds up."""
    config = kerasnets.get_config(name)
    backbone = kerasnets.get_config(config.backbone)
    assert config.task == "segmentation" and config.preprocessing == backbone.preprocessing
    model = kerasnets.create_model(name, input_shape=(64, 96, 3))
    names = kerasnets.endpoints(model)
    assert [n for n in names if n not in backbone.endpoints] == list(config.endpoints) + ["Predictions"]
    assert set(backbone.endpoints) <= set(names)
    reductions = features.reductions(model)
    assert [(f.endpoint, model.get_layer(f.endpoint).output.shape[-1], reductions[f.endpoint])
            for f in config.features] == [(f.endpoint, f.channels, f.reduction) for f in config.features]
    assert model.output.shape[1:] == (64, 96, config.classes)
    assert [layer.name for layer in model.layers if keras_auto_name(layer)] == []
    rows = analysis.summarize(model)
    assert rows[-1]["params"] == model.count_params() == sum(r["params"] for r in rows[:-1])
    assert rows[-1]["macs"] == sum(r["macs"] for r in rows[:-1]) > 0
    # On the small backbone the files are made with: the deepest map at each reduction, decoder ones included.
    deepest = {**{f.reduction: f.endpoint for f in config.features}, 1: "Predictions"}
    wanted = sorted(deepest)
    assert list(kerasnets.feature_extractor(saved[name][0], reductions=wanted).output) == [deepest[r] for r in wanted]


def test_heads_load_only_files_of_the_whole_segmenter(saved, tmp_path):
    model, images, expected, weights_path, _ = saved["unet"]
    with pytest.raises(FileNotFoundError, match="weights='nothing.keras': no such file"):
        kerasnets.create_model("unet", weights="nothing.keras", **small_kwargs("unet"))
    # A file of the backbone alone is not the segmenter's: the first layer that does not fit is named.
    backbone = kerasnets.create_model(HEAD_BACKBONE, include_top=False, input_shape=small_shape("unet"))
    backbone.save_weights(str(tmp_path / "backbone.weights.h5"))
    with pytest.raises(ValueError, match="backbone.weights.h5"):
        kerasnets.create_model("unet", weights=str(tmp_path / "backbone.weights.h5"), **small_kwargs("unet"))


def test_representatives_cover_every_family():
    assert {kerasnets.get_config(n).family for n in REPRESENTATIVES} == {kerasnets.get_config(n).family
                                                                           for n in MODELS + HEADS}
    assert {"resnet18", "resnet50_v2", "resnext50_32x4d", "seresnext50_32x4d", "vgg16", "mobilenet_v1_025",
            "shufflenet_v2_x0_5", "fcn8s", "unet", "deeplab_v3"} <= set(REPRESENTATIVES)


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_keras_files_round_trip_exactly(name, saved):
    model, images, expected, weights_path, keras_path = saved[name]
    for path in (weights_path, keras_path):
        loaded = kerasnets.create_model(name, weights=path, **small_kwargs(name))
        np.testing.assert_array_equal(run(loaded, images), expected, err_msg=path)


@pytest.mark.parametrize("name", MODELS + HEADS)
def test_registry_counts_are_the_built_models(name):
    """`kerasnets list` prints stored counts without building: they must be the built model's, at the default size
    (a head: on its default backbone, 21 classes)."""
    config = kerasnets.get_config(name)
    model = kerasnets.create_model(name, input_shape=(config.default_size, config.default_size, 3))
    total = analysis.summarize(model)[-1]
    assert (total["params"], total["macs"]) == (config.params, config.macs)
    assert total["output_shape"] is None and config.classes == model.output.shape[-1]


def test_every_model_builds_and_loads_on_jax(saved, tmp_path):
    """One child process with KERAS_BACKEND=jax builds every model and loads its .weights.h5 written on TF.

    (Whole .keras files and keras.applications' layout on JAX: test_backends.py.)
    """
    cases, images = {}, {}
    for name, (_, batch, _, weights_path, _) in saved.items():
        kwargs = dict(small_kwargs(name), input_shape=list(small_shape(name)))
        cases[name] = {"name": name, "weights": weights_path, "kwargs": kwargs}
        images[name] = batch
    found = run_on_jax(str(tmp_path), cases, images)
    for key in cases:
        expected = saved[key][2]
        np.testing.assert_allclose(found[key][0], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(),
                                   err_msg=key)
