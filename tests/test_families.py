"""Xception, ResNet v1/v2 and NIN against keras.applications and published tables."""

import dataclasses

import keras
import numpy as np
import pytest

import kerasnets
from weight_files import randomize, rel_max_diff, write_keras_applications_h5

# registry name -> (keras.applications builder, a small input that still exercises every layer)
COUNTERPARTS = {
    "xception": (keras.applications.Xception, 71),
    "inception_resnet_v2": (keras.applications.InceptionResNetV2, 75),
    "resnet50": (keras.applications.ResNet50, 64),
    "resnet101": (keras.applications.ResNet101, 32),
    "resnet152": (keras.applications.ResNet152, 32),
    "resnet50_v2": (keras.applications.ResNet50V2, 64),
    "resnet101_v2": (keras.applications.ResNet101V2, 32),
    "resnet152_v2": (keras.applications.ResNet152V2, 32),
}


@pytest.mark.parametrize("name", sorted(COUNTERPARTS))
def test_keras_applications_files_give_keras_applications_outputs(name, tmp_path):
    """Random weights (batch-norm statistics too) in the published layout, loaded by both, with and without top."""
    builder, size = COUNTERPARTS[name]
    shape = (size, size, 3)
    reference = randomize(builder(weights=None, input_shape=shape, classifier_activation=None), seed=3)
    top = write_keras_applications_h5(reference, str(tmp_path / "top.h5"))
    notop = write_keras_applications_h5(reference, str(tmp_path / "notop.h5"), skip=("avg_pool", "predictions"))
    images = np.random.default_rng(0).uniform(-1, 1, (2,) + shape).astype("float32")
    pooled = keras.Model(reference.input, reference.get_layer("avg_pool").output)

    ours = kerasnets.create_model(name, weights=top, input_shape=shape, classifier_activation=None)
    # One eager call each: tracing these deep networks for `predict` costs more than running one batch.
    assert rel_max_diff(ours(images, training=False), reference(images, training=False)) <= 1e-5
    ours_notop = kerasnets.create_model(name, weights=notop, include_top=False, pooling="avg", input_shape=shape)
    assert rel_max_diff(ours_notop(images, training=False), pooled(images, training=False)) <= 1e-5
    assert ours.count_params() == reference.count_params()


# Published tables: output of each endpoint at the default size (keras.applications' layer shapes,
# He et al. table 1, Chollet figure 5).
ENDPOINT_SHAPES = {
    "xception": {"EntryFlow_Block1": (147, 147, 64), "EntryFlow_Block2": (74, 74, 128),
                 "EntryFlow_Block3": (37, 37, 256), "EntryFlow_Block4": (19, 19, 728),
                 **{f"MiddleFlow_Block{i}": (19, 19, 728) for i in range(1, 9)},
                 "ExitFlow_Block1": (10, 10, 1024), "ExitFlow": (10, 10, 2048)},
    "resnet50": {"conv1": (112, 112, 64), "pool1": (56, 56, 64), "block1": (56, 56, 256), "block2": (28, 28, 512),
                 "block3": (14, 14, 1024), "block4": (7, 7, 2048)},
    "resnet50_v2": {"conv1": (112, 112, 64), "pool1": (56, 56, 64), "block1": (28, 28, 256),
                    "block2": (14, 14, 512), "block3": (7, 7, 1024), "block4": (7, 7, 2048),
                    "postnorm": (7, 7, 2048)},
    "resnet18": {"conv1": (112, 112, 64), "pool1": (56, 56, 64), "block1": (56, 56, 64), "block2": (28, 28, 128),
                 "block3": (14, 14, 256), "block4": (7, 7, 512)},
}


@pytest.mark.parametrize("name", sorted(ENDPOINT_SHAPES))
def test_endpoint_names_and_shapes(name):
    model = kerasnets.create_model(name, include_top=False)
    expected = ENDPOINT_SHAPES[name]
    assert kerasnets.endpoints(model) == list(expected)
    for endpoint, shape in expected.items():
        assert tuple(model.get_layer(endpoint).output.shape[1:]) == shape, endpoint
    features = kerasnets.feature_extractor(model, list(expected)[-2:])
    size = kerasnets.get_config(name).default_size
    out = features(np.zeros((1, size, size, 3), "float32"))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {k: expected[k] for k in list(expected)[-2:]}


def test_layer_names_follow_the_papers():
    resnet = kerasnets.resnet50(include_top=False, input_shape=(32, 32, 3))
    conv = resnet.get_layer("block1.unit_1.bottleneck_v1.conv1")
    assert isinstance(conv, keras.layers.Conv2D) and conv.kernel_size == (1, 1)
    assert resnet.get_layer("block2.unit_1.bottleneck_v1.conv1").strides == (2, 2)  # v1: first unit strides
    assert isinstance(resnet.get_layer("block1.unit_1.bottleneck_v1.shortcut.BatchNorm"),
                      keras.layers.BatchNormalization)
    v2 = kerasnets.resnet50_v2(include_top=False, input_shape=(32, 32, 3))
    assert v2.get_layer("block1.unit_3.bottleneck_v2.conv2").strides == (2, 2)  # v2: last unit strides
    assert isinstance(v2.get_layer("block1.unit_1.bottleneck_v2.preact"), keras.layers.BatchNormalization)
    xception = kerasnets.xception(include_top=False, input_shape=(71, 71, 3))
    assert isinstance(xception.get_layer("EntryFlow_Block2.SeparableConv2d_1"), keras.layers.SeparableConv2D)
    assert xception.get_layer("ExitFlow_Block1.Shortcut").strides == (2, 2)


def test_resnet18_34_match_published_parameter_counts():
    # torchvision's published trainable parameter counts (He et al. table 1 with basic blocks).
    for builder, expected in ((kerasnets.resnet18, 11_689_512), (kerasnets.resnet34, 21_797_672)):
        model = builder(weights=None)
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        assert trainable == expected


# NIN's CIFAR-10 table (the released model): (kernel, input channels, output channels) per layer.
NIN_CIFAR_TABLE = [(5, 3, 192), (1, 192, 160), (1, 160, 96),
                   (5, 96, 192), (1, 192, 192), (1, 192, 192),
                   (3, 192, 192), (1, 192, 192), (1, 192, 10)]
NIN_IMAGENET_TABLE = [(11, 3, 96), (1, 96, 96), (1, 96, 96), (5, 96, 256), (1, 256, 256), (1, 256, 256),
                      (3, 256, 384), (1, 384, 384), (1, 384, 384), (3, 384, 1024), (1, 1024, 1024),
                      (1, 1024, 1000)]


def _table_params(table):
    return sum(k * k * cin * cout + cout for k, cin, cout in table)


def test_nin_parameter_counts_from_the_paper_tables():
    assert _table_params(NIN_CIFAR_TABLE) == 966_986
    assert kerasnets.nin().count_params() == _table_params(NIN_CIFAR_TABLE)
    assert kerasnets.create_model("nin_imagenet").count_params() == _table_params(NIN_IMAGENET_TABLE)
    # Without the top, the class-map layer (1x1, 192 -> 10) goes.
    assert kerasnets.nin(include_top=False).count_params() == _table_params(NIN_CIFAR_TABLE[:-1])
    # batch_norm=True: convolutions lose their bias, each gains 4 BatchNorm values per channel.
    with_bn = kerasnets.nin(batch_norm=True).count_params()
    assert with_bn == sum(k * k * cin * cout + 4 * cout for k, cin, cout in NIN_CIFAR_TABLE)


def test_nin_shapes_and_names():
    model = kerasnets.nin(classes=7)
    assert kerasnets.endpoints(model) == ["mlpconv1", "pool1", "mlpconv2", "pool2", "mlpconv3", "Logits",
                                          "Predictions"]
    shapes = {e: tuple(model.get_layer(e).output.shape[1:]) for e in ("mlpconv1", "pool1", "pool2", "mlpconv3")}
    assert shapes == {"mlpconv1": (32, 32, 96), "pool1": (16, 16, 96), "pool2": (8, 8, 192), "mlpconv3": (8, 8, 7)}
    for name in ("mlpconv1.conv", "mlpconv1.cccp1", "mlpconv1.cccp2", "mlpconv3.cccp6", "pool1.Dropout"):
        model.get_layer(name)
    assert isinstance(model.get_layer("pool2"), keras.layers.AveragePooling2D)
    imagenet = kerasnets.nin("imagenet")
    assert tuple(imagenet.get_layer("mlpconv1").output.shape[1:]) == (54, 54, 96)
    assert tuple(imagenet.output.shape) == (None, 1000)


def test_nin_learns_on_a_small_batch():
    keras.utils.set_random_seed(0)
    model = kerasnets.nin(dropout_rate=0.0, batch_norm=True)
    rng = np.random.default_rng(0)
    labels = np.arange(16) % 10
    # Separable synthetic images: class k lights up row band k.
    images = rng.normal(0, 0.1, (16, 32, 32, 3)).astype("float32")
    for i, k in enumerate(labels):
        images[i, 3 * k:3 * k + 3] += 1.0
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    history = model.fit(images, labels, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]


def test_registry_lists_every_builder():
    assert kerasnets.list_models(task="classification") == sorted(["inception_v1", "inception_v2", "inception_v3", "inception_v4",
                                              "inception_resnet_v2",
                                              "xception", "resnet18", "resnet34", "resnet50",
                                              "resnet101", "resnet152", "resnet50_v2", "resnet101_v2",
                                              "resnet152_v2", "resnext50_32x4d", "resnext101_32x8d",
                                              "seresnet50", "seresnet101", "seresnet152", "seresnext50_32x4d",
                                              "seresnext101_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
                                              "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "vgg16", "vgg19",
                                              "mobilenet_v1_100",
                                              "mobilenet_v1_075", "mobilenet_v1_050", "mobilenet_v1_025", "nin",
                                              "nin_imagenet"])
    assert kerasnets.list_models() == sorted(kerasnets.list_models(task="classification") + [
        "fcn8s", "fcn16s", "fcn32s", "unet", "deeplab_v3"])
    assert kerasnets.list_models("resnet*_v2") == ["resnet101_v2", "resnet152_v2", "resnet50_v2"]
    assert kerasnets.get_config("resnet50").preprocessing == "caffe"
    assert [(w.tag, w.layout) for w in kerasnets.get_config("resnet18").weights] == [
        ("torchvision", "torch"), ("timm:resnet18.a1_in1k", "torch")]  # PyTorch's only: torchvision's and timm's


@pytest.mark.parametrize("name, kwargs, error, pattern", [
    ("xception", dict(final_endpoint="Block99"), ValueError, r"Unknown final_endpoint 'Block99'; valid: \['EntryFlow"),
    ("xception", dict(input_shape=(70, 70, 3)), ValueError, "at least 71"),
    ("xception", dict(pooling="sum", include_top=False), ValueError, "pooling must be one of"),
    ("xception", dict(weights="imagenet", input_shape=(299, 299, 4), include_top=False), ValueError, "3 input"),
    ("resnet50", dict(final_endpoint="block5"), ValueError, r"valid: \['conv1', 'pool1', 'block1'"),
    ("resnet50", dict(final_endpoint="block2"), ValueError, "include_top=False"),
    ("resnet50", dict(input_shape=(31, 31, 3)), ValueError, "at least 32"),
    ("resnet50_v2", dict(weights="imagenet", classes=5), ValueError, "classes=5"),
    ("resnet18", dict(weights="imagenet"), ValueError, "weights='imagenet': no published weights for model 'resnet18'"),
    ("resnet34", dict(weights="/missing.h5"), FileNotFoundError, "weights='/missing.h5'"),
    ("nin", dict(variant="mnist"), ValueError, "variant must be one of"),
    ("nin", dict(weights="imagenet"), ValueError, "no published weights for model 'nin'; use None or a file"),
    ("nin", dict(input_shape=(32, 32)), ValueError, "3 entries"),
    ("resnet18", dict(input_shape=(3, 32, 32)), ValueError, r"looks channels-first.*use input_shape=\(32, 32, 3\)"),
    ("nin", dict(input_shape=(1, 28, 28)), ValueError, r"channels-last: use input_shape=\(28, 28, 1\)"),
    ("nin", dict(dropout_rate=1.5), ValueError, "dropout_rate"),
])
def test_errors(name, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        getattr(kerasnets, name)(**kwargs)


def test_weights_of_another_family_are_refused(tmp_path):
    reference = randomize(keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3)))
    path = write_keras_applications_h5(reference, str(tmp_path / "resnet50.h5"))
    with pytest.raises(ValueError, match="another architecture"):
        kerasnets.resnet101(weights=path, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"has layer\(s\) \['conv1_conv', 'conv1_bn', 'conv2_block1_1_conv'\] that "
                                         "'Xception' does not have .* another architecture"):
        kerasnets.xception(weights=path)


def test_published_weights_are_keras_applications_files():
    from keras.src.applications import resnet as keras_resnet

    for name, stem in (("resnet50", "resnet50"), ("resnet101", "resnet101"), ("resnet152", "resnet152"),
                       ("resnet50_v2", "resnet50v2"), ("resnet101_v2", "resnet101v2"),
                       ("resnet152_v2", "resnet152v2")):
        config = kerasnets.get_config(name)
        top, notop = config.weights_file("imagenet", True), config.weights_file("imagenet", False)
        assert (top.md5, notop.md5) == keras_resnet.WEIGHTS_HASHES[stem]
        assert top.url == f"{keras_resnet.BASE_WEIGHTS_PATH}{stem}_weights_tf_dim_ordering_tf_kernels.h5"


def test_a_failed_download_is_one_clear_error(monkeypatch, tmp_path, capsys):
    """weights="imagenet" with no network: an error naming the URL and where to put the file, in Python and CLI."""
    from kerasnets import cli, registry

    config = registry.get_config("resnet50")
    unreachable = tuple(registry.WeightsFile(f"http://weights.invalid/{name}.h5", "0" * 32, include_top=top)
                        for name, top in (("resnet50", True), ("resnet50_notop", False)))
    imagenet = dataclasses.replace(config.pretrained("imagenet"), files=unreachable)
    monkeypatch.setitem(registry._REGISTRY, "resnet50", dataclasses.replace(config, weights=(imagenet,)))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(ConnectionError, match=r"could not download http://weights\.invalid/resnet50_notop\.h5"):
        kerasnets.resnet50(weights="imagenet", include_top=False)
    output = tmp_path / "export"
    assert cli.main(["export", "resnet50", "--weights", "imagenet", "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kerasnets: error: weights='imagenet': could not download http://weights.invalid/")
    assert "\n" not in err and "0" * 32 in err
    assert str(tmp_path / "keras_home" / "models" / "resnet50.h5") in err
    assert not output.exists()


def test_a_keras_file_that_does_not_fit_is_refused_by_name(tmp_path):
    """weights=<.keras> loads by layer name; a file without a layer, or with other variables, says which."""
    nin_bn = str(tmp_path / "nin_bn.keras")
    kerasnets.nin(batch_norm=True, input_shape=(32, 32, 3)).save(nin_bn)
    with pytest.raises(ValueError, match=r"the file has no layer 'conv1.Conv2D' \(40 of 41 weighted layers missing\)"):
        kerasnets.resnet18(weights=nin_bn, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"layer 'mlpconv1.conv' has 2 variables, the file has 1"):
        kerasnets.nin(input_shape=(32, 32, 3), weights=nin_bn)
    import zipfile

    junk = str(tmp_path / "junk.keras")
    with zipfile.ZipFile(junk, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    with pytest.raises(ValueError, match="is not a loadable .keras model"):
        kerasnets.nin(input_shape=(32, 32, 3), weights=junk)


@pytest.mark.parametrize("name", ["inception_v1", "shufflenet_v2_x0_5", "seresnext50_32x4d", "mobilenet_v1_025"])
def test_layers_of_the_same_shape_start_from_different_draws(name):
    """weights=None: no two kernels start equal (Keras 3 repeats an unseeded initializer instance's numbers, and
    these families share one instance in their settings)."""
    model = kerasnets.create_model(name, input_shape=(64, 64, 3))
    seen = {}
    for layer in model.layers:
        for variable in layer.weights:
            if "kernel" in variable.name:
                value = np.asarray(variable.numpy())
                key = (value.shape, value.tobytes())
                assert key not in seen, f"{layer.name} starts as {seen[key]}"
                seen[key] = layer.name
    assert len(seen) > 20
