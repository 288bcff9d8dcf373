"""The Inception family beside TF-slim's own networks: same endpoints, same values from slim's checkpoints."""

import glob
import os
import tarfile

import numpy as np
import pytest

import kerasnets
from slim_graphs import run_slim_net
from weight_files import rel_max_diff


@pytest.fixture(scope="module")
def slim_inception_v1(tmp_path_factory):
    """slim's inception_v1 (1001 classes) with random weights: its checkpoint and its outputs on two images."""
    from tf_slim.nets import inception_v1

    images = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    prefix = str(tmp_path_factory.mktemp("slim") / "inception_v1.ckpt")
    end_points, logits = run_slim_net(inception_v1.inception_v1, inception_v1.inception_v1_arg_scope, images, prefix,
                                      num_classes=1001)
    return images, prefix, end_points, logits


def test_inception_v1_is_slims_network(slim_inception_v1):
    images, prefix, end_points, logits = slim_inception_v1
    base = list(kerasnets.get_config("inception_v1").endpoints)
    assert [e for e in end_points if e not in ("Logits", "Predictions")] == base  # slim's endpoints, in order
    model = kerasnets.inception_v1(weights=prefix, classes=1001, classifier_activation=None)
    features = kerasnets.feature_extractor(model, base)(images, training=False)
    for endpoint in base:
        assert features[endpoint].shape == end_points[endpoint].shape, endpoint
        assert rel_max_diff(features[endpoint], end_points[endpoint]) <= 1e-4, endpoint
    assert rel_max_diff(model(images, training=False), logits) <= 1e-4
    # weights="imagenet": slim's published archive (here this checkpoint, packed as slim packs it, in the
    # cache where a download would put it); 1000 classes by default, slim's background class 0 dropped.
    entry = kerasnets.get_config("inception_v1").weights_file("imagenet", include_top=True)
    assert entry.url == "http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz"
    archive = os.path.join(os.environ["KERAS_HOME"], "models", entry.filename)
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in glob.glob(prefix + ".*"):
            tar.add(path, arcname=os.path.basename(path).replace(os.path.basename(prefix), entry.member))
    imagenet = kerasnets.googlenet(weights="imagenet", classifier_activation=None)
    assert imagenet.name == "GoogLeNet" and imagenet.output.shape[-1] == 1000
    assert rel_max_diff(imagenet(images, training=False), logits[:, 1:]) <= 1e-4


def test_inception_v1_has_torchvisions_parameters():
    """torchvision's googlenet (its weights' metadata: 6,624,904 parameters, no aux heads) has the same
    convolutions and classifier; its batch norms also have a scale (gamma), which slim's do not."""
    import keras

    model = kerasnets.inception_v1()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    gammas = sum(layer.beta.shape[0] for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert trainable + gammas == 6_624_904
    assert kerasnets.get_config("googlenet") is kerasnets.get_config("inception_v1")
    assert "googlenet" not in kerasnets.list_models()
