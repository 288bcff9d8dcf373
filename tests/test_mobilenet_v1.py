"""MobileNet v1 beside keras.applications' MobileNet (slim's own network: test_slim_nets.py)."""

import warnings

import keras
import numpy as np
import pytest

import kerasnets
from weight_files import randomize, rel_max_diff, write_keras_applications_h5


@pytest.mark.parametrize("name, alpha, depth_multiplier, size", [
    ("mobilenet_v1_100", 1.0, 1, 224), ("mobilenet_v1_050", 0.5, 1, 192), ("mobilenet_v1_025", 0.25, 2, 128)])
def test_keras_applications_files_give_keras_applications_outputs(name, alpha, depth_multiplier, size, tmp_path):
    """Random weights in keras.applications' layout (its depthwise kernels named `depthwise_kernel`), with and
    without the top; its 1x1 `conv_preds` loads as our `Logits`."""
    shape = (size, size, 3)
    reference = randomize(keras.applications.MobileNet(weights=None, input_shape=shape, alpha=alpha,
                                                       depth_multiplier=depth_multiplier, classifier_activation=None),
                          seed=3)
    top = write_keras_applications_h5(reference, str(tmp_path / "top.h5"))
    tail = [layer.name for layer in reference.layers[reference.layers.index(reference.get_layer("conv_pw_13_relu")) + 1:]]
    notop = write_keras_applications_h5(reference, str(tmp_path / "notop.h5"), skip=tail)
    images = np.random.default_rng(0).uniform(-1, 1, (2,) + shape).astype("float32")
    kwargs = {"input_shape": shape, "depth_multiplier": depth_multiplier}
    ours = kerasnets.create_model(name, weights=top, classifier_activation=None, **kwargs)
    assert rel_max_diff(ours(images, training=False), reference(images, training=False)) <= 1e-5
    assert ours.count_params() == reference.count_params()
    features = keras.Model(reference.input, reference.get_layer("conv_pw_13_relu").output)
    ours_notop = kerasnets.create_model(name, weights=notop, include_top=False, **kwargs)
    assert rel_max_diff(ours_notop(images, training=False), features(images, training=False)) <= 1e-5


def test_arguments_are_checked_before_building():
    with pytest.raises(ValueError, match=r"output_stride must be None, 8, 16 or 32, got output_stride=4"):
        kerasnets.mobilenet_v1(output_stride=4)
    with pytest.raises(ValueError, match=r"weights='imagenet' are published for alpha in \[0.25, 0.5, 0.75, 1.0\]; "
                                         r"got alpha=0.6"):
        kerasnets.mobilenet_v1(alpha=0.6, weights="imagenet")
    with pytest.raises(ValueError, match="depth_multiplier=1; got depth_multiplier=2"):
        kerasnets.mobilenet_v1_100(weights="imagenet", depth_multiplier=2)
    with pytest.raises(ValueError, match="alpha must be a number > 0, got alpha=0"):
        kerasnets.mobilenet_v1(alpha=0)


def test_published_files_are_keras_applications_and_slims():
    """URLs as keras.applications' MobileNet builds them (keras publishes no hash for these files), and slim's
    archives (mobilenet_v1.md), one per alpha and input size."""
    for name, text, slim in (("mobilenet_v1_100", "1_0", "1.0"), ("mobilenet_v1_075", "7_5", "0.75"),
                             ("mobilenet_v1_050", "5_0", "0.5"), ("mobilenet_v1_025", "2_5", "0.25")):
        config = kerasnets.get_config(name)
        for size in (128, 160, 192, 224):
            assert config.weights_file("imagenet", True, size).filename == f"mobilenet_{text}_{size}_tf.h5"
            assert config.weights_file("imagenet", False, size).filename == f"mobilenet_{text}_{size}_tf_no_top.h5"
            entry = config.weights_file("imagenet_slim", True, size)
            assert (entry.url, entry.member) == (
                f"http://download.tensorflow.org/models/mobilenet_v1_2018_08_02/mobilenet_v1_{slim}_{size}.tgz",
                f"mobilenet_v1_{slim}_{size}.ckpt")
        assert config.weights_file("imagenet", True).filename == f"mobilenet_{text}_224_tf.h5"
        assert config.pretrained("imagenet").input_sizes == (128, 160, 192, 224)
    assert kerasnets.get_config("mobilenet_v1_100").pretrained("imagenet").top1 == 70.4


def test_imagenet_loads_the_file_for_the_input_size(tmp_path, monkeypatch):
    """As keras.applications' MobileNet: the file trained at a square 128/160/192/224 input; at any other
    size the 224x224 file, with a warning."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    config = kerasnets.get_config("mobilenet_v1_050")
    references = {}
    for seed, size in enumerate((192, 224)):
        references[size] = randomize(keras.applications.MobileNet(weights=None, alpha=0.5, include_top=False,
                                                                  input_shape=(None, None, 3)), seed=seed)
        path = tmp_path / "models" / config.weights_file("imagenet", False, size).filename
        write_keras_applications_h5(references[size], str(path))
    # Multiples of 32, where slim's "same" padding and keras.applications' explicit padding agree.
    for size, expected in ((192, 192), (256, 224)):
        images = np.random.default_rng(size).uniform(-1, 1, (1, size, size, 3)).astype("float32")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = kerasnets.mobilenet_v1_050(weights="imagenet", include_top=False, input_shape=(size, size, 3))
        said = [str(w.message) for w in caught if "published for square inputs" in str(w.message)]
        assert said == ([] if size == expected else [
            "weights='imagenet': mobilenet_v1_050 is published for square inputs of [128, 160, 192, 224]; got "
            "input_shape=(256, 256, 3), so the 224x224 weights are loaded."])
        assert rel_max_diff(ours(images, training=False), references[expected](images, training=False)) <= 1e-5


def test_output_stride_keeps_the_grid_with_atrous_depthwise_convolutions():
    model = kerasnets.mobilenet_v1(include_top=False, output_stride=16, input_shape=(224, 224, 3))
    assert model.output.shape == (None, 14, 14, 1024)
    assert model.get_layer("Conv2d_12_depthwise.Conv2D").strides == (1, 1)
    assert model.get_layer("Conv2d_13_depthwise.Conv2D").dilation_rate == (2, 2)
    assert kerasnets.features.reductions(model)["Conv2d_13_pointwise"] == 16


def test_imagenet_file_is_checked_against_its_first_download(tmp_path, monkeypatch):
    """keras.applications publishes no hash for MobileNet: the first download's SHA-256 is recorded and checked."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    reference = randomize(keras.applications.MobileNet(weights=None, classifier_activation=None), seed=1)
    entry = kerasnets.get_config("mobilenet_v1_100").weights_file("imagenet", include_top=True)
    (tmp_path / "models").mkdir()
    path = write_keras_applications_h5(reference, str(tmp_path / "models" / entry.filename))
    images = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype("float32")
    ours = kerasnets.mobilenet_v1_100(weights="imagenet", classifier_activation=None)
    assert rel_max_diff(ours(images, training=False), reference(images, training=False)) <= 1e-5
    recorded = open(path + ".sha256").read().strip()
    assert len(recorded) == 64
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="changed since it was first downloaded"):
        kerasnets.mobilenet_v1_100(weights="imagenet")
