"""The Inception family beside TF-slim's own networks: same endpoints, same values from slim's checkpoints."""

import glob
import importlib
import os
import tarfile

import keras
import numpy as np
import pytest

import kerasnets
from slim_graphs import run_slim_net
from weight_files import rel_max_diff

# case -> (registered model, tf_slim.nets module, the builders' keyword arguments, which slim takes too)
CASES = {
    "inception_v1": ("inception_v1", "inception_v1", {}),
    "inception_v2": ("inception_v2", "inception_v2", {}),
    "inception_v2_half": ("inception_v2", "inception_v2", {"depth_multiplier": 0.5, "min_depth": 8}),
    "inception_v3": ("inception_v3", "inception_v3", {}),  # slim adds its aux head, which ours skips
}


@pytest.fixture(scope="module")
def slim_nets(tmp_path_factory):
    """{case: (images, checkpoint prefix, slim's endpoints, slim's logits)}: slim's net (1001 classes) with
    random weights, on two images."""
    made = {}
    for case, (_, module_name, kwargs) in CASES.items():
        module = importlib.import_module(f"tf_slim.nets.{module_name}")
        images = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
        prefix = str(tmp_path_factory.mktemp("slim") / f"{module_name}.ckpt")
        end_points, logits = run_slim_net(getattr(module, module_name), getattr(module, f"{module_name}_arg_scope"),
                                          images, prefix, num_classes=1001, **kwargs)
        made[case] = images, prefix, end_points, logits
    return made


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_network_is_slims(case, slim_nets):
    name, _, kwargs = CASES[case]
    images, prefix, end_points, logits = slim_nets[case]
    base = list(kerasnets.get_config(name).endpoints)
    assert [e for e in end_points if e in base] == base  # slim's endpoints, in order
    assert set(end_points) - set(base) <= {"AuxLogits", "PreLogits", "Logits", "Predictions"}
    model = kerasnets.create_model(name, weights=prefix, classes=1001, classifier_activation=None,
                                   input_shape=images.shape[1:], **kwargs)
    features = kerasnets.feature_extractor(model, base)(images, training=False)
    for endpoint in base:
        assert features[endpoint].shape == end_points[endpoint].shape, endpoint
        assert rel_max_diff(features[endpoint], end_points[endpoint]) <= 1e-4, endpoint
    assert rel_max_diff(model(images, training=False), logits) <= 1e-4


@pytest.mark.parametrize("name", ["inception_v1", "inception_v2"])
def test_imagenet_is_slims_published_archive(name, slim_nets, monkeypatch, tmp_path):
    """weights="imagenet": slim's archive (here the test checkpoint, packed as slim packs it, where a download
    would put it); 1000 classes by default, slim's background class 0 dropped."""
    images, prefix, _, logits = slim_nets[name]
    entry = kerasnets.get_config(name).weights_file("imagenet", include_top=True)
    assert entry.url == f"http://download.tensorflow.org/models/{name}_2016_08_28.tar.gz" and entry.md5 is None
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    archive = tmp_path / "models" / entry.filename
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for path in glob.glob(prefix + ".*"):
            tar.add(path, arcname=os.path.basename(path).replace(os.path.basename(prefix), entry.member))
    model = kerasnets.create_model(name, weights="imagenet", classifier_activation=None)
    assert model.output.shape[-1] == 1000
    assert rel_max_diff(model(images, training=False), logits[:, 1:]) <= 1e-4
    with pytest.raises(ValueError, match="predicts 1001 or 1000 classes; got classes=10"):
        kerasnets.create_model(name, weights="imagenet", classes=10)


def test_googlenet_is_inception_v1_with_torchvisions_parameters():
    """torchvision's googlenet (its weights' metadata: 6,624,904 parameters, no aux heads) has the same
    convolutions and classifier; its batch norms also have a scale (gamma), which slim's do not."""
    model = kerasnets.googlenet()
    assert model.name == "GoogLeNet"
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    gammas = sum(layer.beta.shape[0] for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert trainable + gammas == 6_624_904
    assert kerasnets.get_config("googlenet") is kerasnets.get_config("inception_v1")
    assert "googlenet" not in kerasnets.list_models()


def test_inception_v2_first_layer_is_slims_separable_convolution():
    model = kerasnets.inception_v2(include_top=False)
    first = model.get_layer("Conv2d_1a_7x7.Conv2D")
    assert isinstance(first, keras.layers.SeparableConv2D) and first.depth_multiplier == 8
    assert first.use_bias and first.strides == (2, 2) and first.kernel_size == (7, 7)
    assert isinstance(model.get_layer("Mixed_5c.Branch_3.MaxPool_0a_3x3"), keras.layers.MaxPooling2D)
    assert isinstance(model.get_layer("Mixed_5b.Branch_3.AvgPool_0a_3x3"), keras.layers.AveragePooling2D)
