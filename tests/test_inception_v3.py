"""Inception v3's architecture against TF-slim's published table."""

import keras
import numpy as np
import pytest

import kerasnets

# TF-slim nets/inception_v3.py, shapes of the end_points at 299x299 (its comments and tests).
SLIM_299 = {
    "Conv2d_1a_3x3": (149, 149, 32), "Conv2d_2a_3x3": (147, 147, 32), "Conv2d_2b_3x3": (147, 147, 64),
    "MaxPool_3a_3x3": (73, 73, 64), "Conv2d_3b_1x1": (73, 73, 80), "Conv2d_4a_3x3": (71, 71, 192),
    "MaxPool_5a_3x3": (35, 35, 192), "Mixed_5b": (35, 35, 256), "Mixed_5c": (35, 35, 288),
    "Mixed_5d": (35, 35, 288), "Mixed_6a": (17, 17, 768), "Mixed_6b": (17, 17, 768), "Mixed_6c": (17, 17, 768),
    "Mixed_6d": (17, 17, 768), "Mixed_6e": (17, 17, 768), "Mixed_7a": (8, 8, 1280), "Mixed_7b": (8, 8, 2048),
    "Mixed_7c": (8, 8, 2048),
}
BASE = list(SLIM_299)


@pytest.fixture(scope="module")
def full_model():
    return kerasnets.inception_v3(weights=None, aux_logits=True)


def test_endpoints_and_shapes_at_299(full_model):
    names = kerasnets.endpoints(full_model)
    assert [n for n in names if n in SLIM_299] == BASE
    assert set(names) == set(BASE) | {"AuxLogits", "AvgPool_1a", "PreLogits", "Logits", "Predictions"}
    for name, shape in SLIM_299.items():
        assert tuple(full_model.get_layer(name).output.shape[1:]) == shape, name
    assert tuple(full_model.get_layer("Logits").output.shape) == (None, 1000)
    assert full_model.output_names == ["Predictions", "AuxLogits"]
    assert tuple(full_model.get_layer("AuxLogits").output.shape) == (None, 1000)


def test_parameter_count_equals_keras_applications(full_model):
    # keras.applications.InceptionV3 has 23,851,784 parameters (its docs' table); the aux head adds
    # slim's 1x1x768x128 + 5x5x128x768 convolutions with their batch norms and the 768x1000 classifier.
    aux = 768 * 128 + 3 * 128 + 5 * 5 * 128 * 768 + 3 * 768 + 768 * 1000 + 1000
    assert full_model.count_params() == 23_851_784 + aux


def test_layer_names_mirror_slim_scopes(full_model):
    conv = full_model.get_layer("Mixed_5b.Branch_1.Conv2d_0b_5x5")
    assert isinstance(conv, keras.layers.Conv2D) and conv.kernel_size == (5, 5) and not conv.use_bias
    norm = full_model.get_layer("Mixed_5b.Branch_1.Conv2d_0b_5x5.BatchNorm")
    assert not norm.scale and norm.epsilon == 0.001 and norm.momentum == 0.9997
    assert full_model.get_layer("Mixed_5c.Branch_1.Conv_1_0c_5x5").kernel_size == (5, 5)
    assert full_model.get_layer("Mixed_6a.Branch_0.Conv2d_1a_1x1").strides == (2, 2)
    assert full_model.get_layer("Mixed_7b.Branch_1.Conv2d_0b_3x1").kernel_size == (3, 1)
    assert full_model.get_layer("Mixed_7c.Branch_1.Conv2d_0c_3x1").kernel_size == (3, 1)
    assert full_model.get_layer("AuxLogits.Conv2d_2a_5x5").kernel_size == (5, 5)
    assert isinstance(full_model.get_layer("Conv2d_1a_3x3"), keras.layers.Activation)
    assert full_model.get_layer("Conv2d_1a_3x3.Conv2D").padding == "valid"
    assert full_model.get_layer("Conv2d_2b_3x3.Conv2D").padding == "same"
    assert all("/" not in layer.name for layer in full_model.layers)


def test_names_are_deterministic():
    kwargs = dict(depth_multiplier=0.1, include_top=False, input_shape=(75, 75, 3))
    first = [layer.name for layer in kerasnets.inception_v3(**kwargs).layers]
    second = [layer.name for layer in kerasnets.inception_v3(**kwargs).layers]
    assert first == second


def test_shapes_at_224_and_unknown_size():
    # Hand-computed: valid 3x3/2 -> (n-3)//2+1, valid 3x3 -> n-2, same keeps n.
    expected = {"Conv2d_1a_3x3": 111, "Conv2d_2a_3x3": 109, "MaxPool_3a_3x3": 54, "Conv2d_4a_3x3": 52,
                "MaxPool_5a_3x3": 25, "Mixed_5d": 25, "Mixed_6a": 12, "Mixed_6e": 12, "Mixed_7a": 5, "Mixed_7c": 5}
    model = kerasnets.inception_v3(include_top=False, input_shape=(None, None, 3), depth_multiplier=0.1)
    features = kerasnets.feature_extractor(model, list(expected))
    out = features(np.zeros((1, 224, 224, 3), "float32"))
    for name, size in expected.items():
        assert out[name].shape[1:3] == (size, size), name


def test_depth_multiplier_half_channels():
    model = kerasnets.inception_v3(include_top=False, depth_multiplier=0.5, input_shape=(75, 75, 3))
    # depth(d) = max(int(d * 0.5), 16), summed over each module's branches (pool branches keep their input).
    expected = {"Conv2d_1a_3x3": 16, "Conv2d_2b_3x3": 32, "Conv2d_3b_1x1": 40, "Conv2d_4a_3x3": 96,
                "Mixed_5b": 32 + 32 + 48 + 16, "Mixed_5c": 32 + 32 + 48 + 32, "Mixed_6a": 192 + 48 + 144,
                "Mixed_6b": 96 * 4, "Mixed_7a": 160 + 96 + 384, "Mixed_7c": 160 + 192 * 2 + 192 * 2 + 96}
    for name, channels in expected.items():
        assert model.get_layer(name).output.shape[-1] == channels, name


def test_min_depth_applies():
    model = kerasnets.inception_v3(include_top=False, depth_multiplier=0.01, min_depth=8, input_shape=(75, 75, 3))
    assert model.get_layer("Conv2d_1a_3x3").output.shape[-1] == 8
    assert model.get_layer("Mixed_5b").output.shape[-1] == 8 * 4


def test_final_endpoint_truncates():
    model = kerasnets.inception_v3(include_top=False, final_endpoint="Mixed_5d", depth_multiplier=0.25)
    assert kerasnets.endpoints(model)[-1] == "Mixed_5d"
    assert tuple(model.output.shape[1:3]) == (35, 35)
    stem = kerasnets.inception_v3(include_top=False, final_endpoint="Conv2d_1a_3x3")
    assert kerasnets.endpoints(stem) == ["Conv2d_1a_3x3"]


def test_aux_kernel_shrinks_for_small_input():
    # 107x107 gives Mixed_6e 5x5, pooled to 1x1: slim's kernel rule makes Conv2d_2a a 1x1.
    model = kerasnets.inception_v3(input_shape=(107, 107, 3), aux_logits=True, depth_multiplier=0.1, classes=5)
    assert model.get_layer("AuxLogits.Conv2d_2a_1x1").kernel_size == (1, 1)
    predictions, aux = model(np.zeros((2, 107, 107, 3), "float32"))
    assert predictions.shape == aux.shape == (2, 5)
    with pytest.raises(ValueError, match="aux_logits=True needs Mixed_6e"):
        kerasnets.inception_v3(input_shape=(106, 106, 3), aux_logits=True)


def test_minimum_input_and_pooling():
    model = kerasnets.inception_v3(include_top=False, input_shape=(75, 75, 1), pooling="max", depth_multiplier=0.1)
    assert tuple(model.output.shape) == (None, model.get_layer("Mixed_7c").output.shape[-1])
    assert tuple(model.get_layer("Mixed_7c").output.shape[1:3]) == (1, 1)


def test_input_tensor_is_used():
    inputs = keras.Input((99, 99, 3))
    model = kerasnets.inception_v3(input_tensor=inputs, include_top=False, depth_multiplier=0.1)
    assert model.inputs[0] is inputs


def test_classifier_head():
    model = kerasnets.inception_v3(classes=3, depth_multiplier=0.1, input_shape=(80, 80, 3))
    out = model.predict(np.random.default_rng(0).uniform(-1, 1, (4, 80, 80, 3)), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer("PreLogits").rate == pytest.approx(0.2)
    logits = kerasnets.inception_v3(classes=3, depth_multiplier=0.1, input_shape=(80, 80, 3),
                                    classifier_activation=None)
    assert logits.get_layer("Predictions").activation.__name__ == "linear"


def test_feature_extractor_dict_output():
    model = kerasnets.inception_v3(include_top=False, depth_multiplier=0.1)
    fe = kerasnets.feature_extractor(model, ["Mixed_5d", "Mixed_6e", "Mixed_7c"])
    out = fe(np.zeros((1, 299, 299, 3), "float32"))
    assert {k: tuple(v.shape[1:3]) for k, v in out.items()} == {"Mixed_5d": (35, 35), "Mixed_6e": (17, 17),
                                                               "Mixed_7c": (8, 8)}
    with pytest.raises(ValueError, match="Unknown endpoint.*Mixed_9z.*valid"):
        kerasnets.feature_extractor(model, ["Mixed_9z"])


def test_preprocess_input_scales_to_unit_range_and_leaves_the_pixels_alone():
    x = np.array([[[[0.0, 127.5, 255.0]]]], "float32")
    np.testing.assert_allclose(kerasnets.preprocess_input(x), [[[[-1.0, 0.0, 1.0]]]])
    # keras.applications' normalises a float array in place; ours returns a new one, for every mode.
    for model in ("inception_v3", "resnet18", "resnet50"):
        kerasnets.preprocess_input(x, model=model)
        np.testing.assert_array_equal(x, [[[[0.0, 127.5, 255.0]]]])


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(final_endpoint="Mixed_8a"), ValueError, r"Unknown final_endpoint 'Mixed_8a'; valid: \['Conv2d_1a_3x3'"),
    (dict(final_endpoint="Mixed_6e"), ValueError, "include_top=False"),
    (dict(depth_multiplier=0), ValueError, "depth_multiplier must be a number > 0, got depth_multiplier=0"),
    (dict(depth_multiplier=-1.0), ValueError, "depth_multiplier"),
    (dict(min_depth=0), ValueError, "min_depth"),
    (dict(input_shape=(74, 299, 3)), ValueError, "at least 75"),
    (dict(input_shape=(299, 299)), ValueError, "3 entries"),
    (dict(pooling="mean", include_top=False), ValueError, "pooling must be one of"),
    (dict(classes=0), ValueError, "classes must be a positive integer"),
    (dict(dropout_rate=1.0), ValueError, "dropout_rate"),
    (dict(aux_logits=True, include_top=False), ValueError, "aux_logits=True"),
])
def test_argument_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        kerasnets.inception_v3(**kwargs)


def test_decode_predictions_drops_slim_background(monkeypatch):
    from keras.src.applications import imagenet_utils

    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", {str(i): (f"n{i:08d}", f"class_{i}") for i in range(1000)})
    scores = np.zeros((1, 1001), "float32")
    scores[0, 0], scores[0, 6], scores[0, 2] = 0.9, 0.08, 0.02  # 0 is slim's background
    top = kerasnets.decode_predictions(scores, top=2)[0]
    assert [(name, float(score)) for _, name, score in top] == [("class_5", pytest.approx(0.08)),
                                                                 ("class_1", pytest.approx(0.02))]
