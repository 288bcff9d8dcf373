"""VGG 16/19 beside keras.applications' and TF-slim's own networks, in both head forms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnets
from kerasnets import training
from slim_graphs import pack_slim_archive, run_slim_net, slim_module
from weight_files import randomize, rel_max_diff, write_keras_applications_h5

KERAS_APPLICATIONS = {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19}


@pytest.mark.parametrize("name", sorted(KERAS_APPLICATIONS))
def test_keras_applications_files_give_keras_applications_outputs(name, tmp_path):
    """At 32x32 (pool5 is 1x1, so fc1 is small), with and without the top."""
    shape = (32, 32, 3)
    reference = randomize(KERAS_APPLICATIONS[name](weights=None, input_shape=shape, classifier_activation=None),
                          seed=3)
    top = write_keras_applications_h5(reference, str(tmp_path / "top.h5"))
    notop = write_keras_applications_h5(reference, str(tmp_path / "notop.h5"),
                                        skip=("flatten", "fc1", "fc2", "predictions"))
    images = np.random.default_rng(0).uniform(-100, 100, (2,) + shape).astype("float32")
    ours = kerasnets.create_model(name, weights=top, input_shape=shape, classifier_activation=None)
    assert rel_max_diff(ours(images, training=False), reference(images, training=False)) <= 1e-5
    assert ours.count_params() == reference.count_params()
    ours_notop = kerasnets.create_model(name, weights=notop, include_top=False, input_shape=shape)
    pool5 = keras.Model(reference.input, reference.get_layer("block5_pool").output)
    assert rel_max_diff(ours_notop(images, training=False), pool5(images, training=False)) <= 1e-5


@pytest.fixture(scope="module")
def slim_vgg16(tmp_path_factory):
    images = np.random.default_rng(0).uniform(-100, 100, (2, 224, 224, 3)).astype("float32")
    prefix = str(tmp_path_factory.mktemp("slim") / "vgg_16.ckpt")
    module = slim_module("vgg")
    end_points, logits = run_slim_net(module.vgg_16, module.vgg_arg_scope, images, prefix, num_classes=1000)
    return images, prefix, end_points, logits


@pytest.mark.parametrize("fully_convolutional", [False, True])
def test_slim_checkpoint_gives_slims_outputs(slim_vgg16, fully_convolutional):
    """slim's vgg_16 (fully convolutional, 1000 classes, no background) with its checkpoint: both our head forms
    load it (fc6's 7x7x512x4096 kernel is the dense layer's 25088x4096) and give its endpoints and logits."""
    images, prefix, end_points, logits = slim_vgg16
    model = kerasnets.vgg16(weights=prefix, classifier_activation=None, fully_convolutional=fully_convolutional)
    wanted = [f"{kind}{b}" for b in range(1, 6) for kind in ("conv", "pool")] + ["fc6", "fc7"]
    features = kerasnets.feature_extractor(model, wanted)(images, training=False)
    slim_names = {f"conv{b}": f"vgg_16/conv{b}/conv{b}_{3 if b > 2 else 2}" for b in range(1, 6)}
    for endpoint in wanted:
        expected = end_points[f"vgg_16/{endpoint}" if endpoint not in slim_names else slim_names[endpoint]]
        got = np.asarray(features[endpoint])
        assert got.size == expected.size, endpoint  # slim's fc6/fc7 are 1x1 maps, ours vectors (dense form)
        assert rel_max_diff(got.reshape(expected.shape), expected) <= 1e-4, endpoint
    output = np.asarray(model(images, training=False))
    assert output.shape == ((2, 1, 1, 1000) if fully_convolutional else (2, 1000))
    assert rel_max_diff(output.reshape(logits.shape), logits) <= 1e-4


def _slim_vgg_preprocessing(pixels):
    """tensorflow/models' research/slim/preprocessing/vgg_preprocessing.py: ImageNet's mean subtracted in RGB."""
    from object_detection.preprocessing import vgg_preprocessing as slim

    means = [slim._R_MEAN, slim._G_MEAN, slim._B_MEAN]
    return np.stack([slim._mean_image_subtraction(tf.constant(image), means).numpy() for image in pixels])


def test_published_slim_weights_are_slims_archive_with_slims_preprocessing(slim_vgg16, monkeypatch, tmp_path):
    """`weights="imagenet_slim"`: slim's vgg_16 archive (the test checkpoint packed as slim packs it, where a
    download would put it); 1000 classes, no background. Its input is normalised as slim's vgg_preprocessing
    does, not as keras.applications' VGG (BGR), in preprocess_input and in the models kerasnets trains."""
    images, prefix, _, logits = slim_vgg16
    published = kerasnets.get_config("vgg16").pretrained("imagenet_slim")
    assert (published.classes, published.label_offset, published.preprocessing, published.top1) == (
        1000, 0, "rgb_mean", 71.5)
    entry = published.file(include_top=True)
    assert (entry.url, entry.member) == ("http://download.tensorflow.org/models/vgg_16_2016_08_28.tar.gz",
                                         "vgg_16.ckpt")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    pack_slim_archive(prefix, str(tmp_path / "models" / entry.filename), entry.member)
    model = kerasnets.vgg16(weights="imagenet_slim", classifier_activation=None)
    assert rel_max_diff(model(images, training=False), logits) <= 1e-4

    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = _slim_vgg_preprocessing(pixels)
    assert np.allclose(kerasnets.preprocess_input(pixels, model="vgg16", weights="imagenet_slim"), expected, atol=1e-4)
    trainable = training.build_model("vgg16", classes=3, image_size=32, weights="imagenet_slim")
    assert np.allclose(trainable.get_layer("image.Preprocess")(pixels), expected, atol=1e-4)
    # A checkpoint given by path is slim's layout, so slim's preprocessing; a misspelt tag is refused.
    assert kerasnets.get_config("vgg16").preprocessing_for(prefix) == "rgb_mean"
    with pytest.raises(FileNotFoundError, match="weights='imagenet-slim': no such file"):
        kerasnets.preprocess_input(pixels, model="vgg16", weights="imagenet-slim")
    # keras.applications' weights keep keras.applications' preprocessing (which rewrites a float array in place)
    assert np.allclose(kerasnets.preprocess_input(pixels.copy(), model="vgg16"),
                       keras.applications.vgg16.preprocess_input(pixels.copy()), atol=1e-4)


def test_fully_convolutional_scores_a_map_on_larger_inputs():
    model = kerasnets.vgg16(fully_convolutional=True, input_shape=(None, None, 3))
    assert model.output.shape == (None, None, None, 1000)
    same = kerasnets.vgg16(include_top=True, fully_convolutional=True, fc_conv_padding="same", weights=None,
                           input_shape=(320, 448, 3))
    assert same.output.shape == (None, 10, 14, 1000)  # input / 32 with "same"; "valid" gives input / 32 - 6
    with pytest.raises(ValueError, match=r"fixed input size .* fully_convolutional=True"):
        kerasnets.vgg16(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"at least 224x224 .* input_shape=\(160, 160, 3\)"):
        kerasnets.vgg16(fully_convolutional=True, input_shape=(160, 160, 3))
    with pytest.raises(ValueError, match="fc_conv_padding must be 'valid' or 'same', got fc_conv_padding='full'"):
        kerasnets.vgg19(fully_convolutional=True, fc_conv_padding="full")
