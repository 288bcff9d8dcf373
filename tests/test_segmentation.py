"""FCN, U-Net and DeepLab v3 heads on backbones of several families: shapes, taps, initialisation, input channels."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnets
from kerasnets import segmentation
from weight_files import randomize, rel_max_diff

SHAPE = (64, 96, 3)  # sides multiples of 32, not square: a transposed height and width would show


def _images(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (2,) + tuple(shape)).astype("float32")


def _input_of(model, layer_name):
    """The name of the layer feeding `layer_name` (to see which endpoint a head taps)."""
    return [node.operation.name for node in model.get_layer(layer_name)._inbound_nodes[0].parent_nodes]


@pytest.mark.parametrize("head, backbone, kwargs, taps", [
    (segmentation.fcn, "resnet18", {"skips": 8}, {"score_fr": "block4", "score_16": "block3", "score_8": "block2"}),
    (segmentation.fcn, "vgg16", {"skips": 16}, {"score_fr": "pool5", "score_16": "conv5"}),
    (segmentation.fcn, "mobilenet_v1_025", {"skips": 32}, {"score_fr": "Conv2d_13_pointwise"}),
    (segmentation.unet, "resnet18", {}, {"decoder.stage1.Concat": "block3", "decoder.stage3.Concat": "block1",
                                        "decoder.stage4.Concat": "conv1"}),
    (segmentation.unet, "shufflenet_v2_x0_5", {}, {"decoder.stage2.Concat": "Stage2"}),
    (segmentation.unet, "inception_resnet_v2", {"align_feature_maps": True, "input_shape": (96, 128, 3)},
     {"decoder.stage1.Concat": "PreAuxLogits"}),
    (segmentation.deeplab_v3, "mobilenet_v1_025", {}, {"aspp.Branch_0.Conv2d_1x1": "Conv2d_13_pointwise"}),
    (segmentation.deeplab_v3, "resnet18", {"output_stride": 8}, {"aspp.Branch_0.Conv2d_1x1": "block4"}),
    (segmentation.deeplab_v3, "xception", {"input_shape": (96, 128, 3)},
     {"aspp.Branch_0.Conv2d_1x1": "ExitFlow"}),
])
def test_heads_score_every_pixel_of_the_input_from_the_endpoints_they_tap(head, backbone, kwargs, taps):
    shape = kwargs.pop("input_shape", SHAPE)
    model = head(backbone, classes=5, input_shape=shape, **kwargs)
    assert model.output.shape == (None,) + shape[:2] + (5,)
    probabilities = np.asarray(model(_images(shape), training=False))
    assert probabilities.shape == (2,) + shape[:2] + (5,)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    for layer_name, endpoint in taps.items():
        assert endpoint in _input_of(model, layer_name), (layer_name, _input_of(model, layer_name))


def test_any_input_size_when_it_is_left_open():
    model = segmentation.deeplab_v3("mobilenet_v1_025", classes=3, input_shape=(None, None, 3))
    assert model.output.shape == (None, None, None, 3)
    probe = keras.Model(model.input, [model.get_layer("aspp.ImagePooling.Broadcast").output,
                                      model.get_layer("aspp.ImagePooling.Conv2d_1x1.Relu").output])
    assert [model.get_layer(f"aspp.Branch_{i}.Conv2d_3x3_rate{rate}").dilation_rate[0]
            for i, rate in ((1, 6), (2, 12), (3, 18))] == [6, 12, 18]
    for shape in ((64, 96, 3), (128, 64, 3)):
        scores = model(_images(shape), training=False)
        assert scores.shape == (2,) + shape[:2] + (3,)
        np.testing.assert_allclose(model.predict(_images(shape), verbose=0), scores, atol=1e-5)  # kerasnets' predict
        grid, pooled = (np.asarray(t) for t in probe(_images(shape), training=False))
        assert grid.shape[1:3] == (shape[0] // 16, shape[1] // 16) and pooled.shape[1:3] == (1, 1)
        np.testing.assert_array_equal(grid, np.broadcast_to(pooled, grid.shape))  # image pooling, spread over the grid
    # Bilinear upsampling cannot be traced for any size: kerasnets' predict traced once per size instead.
    assert model._kerasnets_forwards[(False, None)] is None
    assert {(False, (64, 96, 3)), (False, (128, 64, 3))} <= set(model._kerasnets_forwards)


@pytest.mark.parametrize("grid, kernel, rate", [
    ((16, 16), 3, 6), ((16, 16), 3, 12), ((16, 16), 3, 18), ((4, 4), 3, 36), ((5, 7), 3, 2), ((9, 6), (2, 3), 3),
    ((8, 8), 5, 2), ((1, 5), (2, 3), (3, 1))])
def test_atrous_conv_by_taps_equals_keras_conv2d(grid, kernel, rate, tmp_path):
    """AtrousConv2D against Keras' Conv2D with the same weights: output, gradients (training) and a bfloat16
    policy, on square and oblong grids, rates inside and past the grid, odd and even kernels ("same" pads the
    rest after; on a grid of one row no tap of an even kernel reads it); it saves and opens as itself."""
    from kerasnets.layers.atrous import AtrousConv2D
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, *grid, 5)).astype("float32"))
    reference = keras.layers.Conv2D(4, kernel, padding="same", dilation_rate=rate)
    ours = AtrousConv2D(4, kernel, padding="same", dilation_rate=rate)
    reference.build(x.shape)
    ours.build(x.shape)
    reference.set_weights([rng.normal(size=v.shape).astype("float32") for v in reference.weights])
    ours.set_weights(reference.get_weights())
    gradients = []
    for layer in (reference, ours):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) ** 2)
        gradients.append(tape.gradient(loss, [x, *layer.trainable_weights]))
    np.testing.assert_allclose(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    for theirs, mine in zip(*gradients):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(theirs).max())))
    half = {layer: type(layer).from_config({**layer.get_config(), "dtype": "mixed_bfloat16"})
            for layer in (reference, ours)}
    for copy, original in zip(half.values(), (reference, ours)):
        copy.build(x.shape)
        copy.set_weights(original.get_weights())
    assert rel_max_diff(half[ours](x), half[reference](x)) < 0.02
    model = keras.Sequential([keras.Input(x.shape[1:]), ours])
    model.save(tmp_path / "atrous.keras")
    loaded = keras.saving.load_model(tmp_path / "atrous.keras")
    assert type(loaded.layers[0]) is AtrousConv2D
    np.testing.assert_array_equal(loaded(x), model(x))


def test_aspp_on_a_fixed_grid_runs_by_taps_with_keras_conv2ds_output():
    """DeepLab v3 built for a fixed size runs its ASPP's atrous convolutions tap by tap (the paper's rates kept);
    left open to any size, as Keras' Conv2D. The same weights give the same scores; at 64x64 (a 4x4 grid at output
    stride 16) every rate reaches past the grid, where TensorFlow's space-to-batch would multiply padding."""
    from kerasnets.layers.atrous import AtrousConv2D
    fixed = segmentation.deeplab_v3("resnet18", classes=5, input_shape=(64, 64, 3))
    open_size = segmentation.deeplab_v3("resnet18", classes=5, input_shape=(None, None, 3))
    randomize(fixed)
    open_size.set_weights(fixed.get_weights())
    branches = [fixed.get_layer(f"aspp.Branch_{i}.Conv2d_3x3_rate{r}") for i, r in ((1, 6), (2, 12), (3, 18))]
    assert [layer.dilation_rate for layer in branches] == [(6, 6), (12, 12), (18, 18)]
    assert all(isinstance(layer, AtrousConv2D) for layer in branches)
    assert not isinstance(fixed.get_layer("block4.unit_1.basic.conv1"), AtrousConv2D)  # the backbone's own stay
    images = _images((64, 64, 3))
    assert rel_max_diff(fixed(images, training=False), open_size(images, training=False)) < 1e-5


def test_deeplab_runs_the_backbone_atrous_where_it_can():
    """MobileNet v1, ResNet and Xception take an output_stride: their later convolutions dilate instead of
    striding."""
    model = segmentation.deeplab_v3("mobilenet_v1_025", output_stride=8, classes=3, input_shape=SHAPE)
    assert model.get_layer("Conv2d_6_depthwise.Conv2D").strides == (1, 1)
    assert model.get_layer("Conv2d_13_depthwise.Conv2D").dilation_rate == (4, 4)
    assert model.get_layer("aspp.Branch_3.Conv2d_3x3_rate36").dilation_rate == (36, 36)
    model = segmentation.deeplab_v3("resnet50", classes=3, input_shape=SHAPE)
    assert model.get_layer("block4.unit_1.bottleneck_v1.conv1").strides == (1, 1)
    # keras.applications' v1 unit strides in its first 1x1, so its 3x3 comes after the removed stride and dilates
    assert [model.get_layer(f"block4.unit_{u}.bottleneck_v1.conv2").dilation_rate for u in (1, 2)] == [(2, 2), (2, 2)]
    model = segmentation.deeplab_v3("xception", classes=3, input_shape=(96, 128, 3))
    assert model.get_layer("ExitFlow_Block1.MaxPool").strides == (1, 1)
    assert model.get_layer("ExitFlow_Block1.SeparableConv2d_2").dilation_rate == (1, 1)
    assert model.get_layer("ExitFlow.SeparableConv2d_1").dilation_rate == (2, 2)
    assert model.get_layer("ExitFlow").output.shape[1:3] == (6, 8)


@pytest.mark.parametrize("arch, size, output_stride, grids", [
    ("resnet18", 64, 8, {"block2": (8, 8), "block3": (8, 8), "block4": (8, 8)}),
    ("resnet50", 64, 16, {"block3": (16, 4), "block4": (16, 4)}),
    ("resnet50_v2", 64, 16, {"block2": (16, 4), "block3": (16, 4), "block4": (16, 4)}),
    ("xception", 96, 16, {"EntryFlow_Block4": (16, 6), "ExitFlow_Block1": (16, 6), "ExitFlow": (16, 6)}),
])
def test_atrous_backbones_keep_the_grid_and_the_weights(arch, size, output_stride, grids, tmp_path):
    """The same weights as the plain network (a file of one loads into the other); the grid stops shrinking at
    `output_stride`: {endpoint: (reduction, side of its map)}. A ResNet's atrous features, taken every
    32 / output_stride cells, are the plain network's exactly (the dilations make up for every removed stride);
    Xception's only approximately (its pooling cannot dilate), so only its grid is checked."""
    shape = (size, size, 3)
    plain = randomize(kerasnets.create_model(arch, include_top=False, input_shape=shape), seed=4)
    plain.save_weights(str(tmp_path / "plain.weights.h5"))
    atrous = kerasnets.create_model(arch, include_top=False, input_shape=shape, output_stride=output_stride,
                                    weights=str(tmp_path / "plain.weights.h5"))
    found = kerasnets.features.reductions(atrous)
    assert {e: (found[e], atrous.get_layer(e).output.shape[1]) for e in grids} == grids
    assert atrous.count_params() == plain.count_params()
    if arch.startswith("resnet"):
        images = _images(shape)
        step = 32 // output_stride
        fine = np.asarray(atrous(images, training=False))[:, ::step, ::step]
        assert rel_max_diff(fine, plain(images, training=False)) <= 1e-5
    with pytest.raises(ValueError, match="output_stride must be None, 8, 16 or 32, got output_stride=4"):
        kerasnets.create_model(arch, output_stride=4)


def test_fcn_upsampling_starts_as_bilinear_resizing():
    """On a ramp, the transposed convolutions (2x and 8x) give tf.image.resize's bilinear values away from the
    border, where resize repeats the edge and the convolution sees zeros."""
    ramp = np.add.outer(np.arange(8.0), 0.5 * np.arange(8.0))[None, :, :, None].astype("float32")
    for factor in (2, 8):
        kernel = segmentation.bilinear_kernel(factor, 1)
        layer = keras.layers.Conv2DTranspose(1, kernel.shape[0], strides=factor, padding="same", use_bias=False)
        layer.build((None, 8, 8, 1))
        layer.set_weights([kernel])
        ours = np.asarray(layer(ramp))[0, factor:-factor, factor:-factor, 0]
        resized = tf.image.resize(ramp, (8 * factor, 8 * factor), method="bilinear").numpy()
        np.testing.assert_allclose(ours, resized[0, factor:-factor, factor:-factor, 0], atol=1e-5)
    fcn = segmentation.fcn("resnet18", skips=8, classes=4, input_shape=SHAPE)
    np.testing.assert_array_equal(fcn.get_layer("upscore").get_weights()[0], segmentation.bilinear_kernel(8, 4))
    # The bilinear start lives in the weights, not in the config that every .keras file carries as JSON:
    # FCN-32s' 64x64x21x21 kernel written as an initializer's value was 10 MB of config.
    fcn32 = segmentation.fcn("resnet18", skips=32, classes=21, input_shape=SHAPE)
    np.testing.assert_array_equal(fcn32.get_layer("upscore").get_weights()[0], segmentation.bilinear_kernel(32, 21))
    assert len(json.dumps(fcn32.get_config())) < 200_000


def test_unet_starts_from_its_coarse_scores_and_can_be_the_papers_decoder_alone():
    """The full-resolution scores start at zero, so a fresh U-Net's logits are its reduction-8 scores upsampled
    bilinearly (as FCN-8s'); training then moves both. coarse_scores=False: the paper's decoder, scored at the end."""
    unet = segmentation.unet("resnet18", classes=4, input_shape=SHAPE, classifier_activation=None)
    images = _images()
    coarse = keras.Model(unet.input, [unet.get_layer("score_8").output, unet.get_layer("upscore").output])
    scores_8, upsampled = (np.asarray(t) for t in coarse(images))
    np.testing.assert_allclose(np.asarray(unet(images)), upsampled, atol=1e-6)
    assert np.abs(upsampled).max() > 0.1  # not zeros everywhere: the coarse path carries the scores
    resized = tf.image.resize(scores_8, SHAPE[:2], method="bilinear").numpy()
    np.testing.assert_allclose(upsampled[:, 8:-8, 8:-8], resized[:, 8:-8, 8:-8], atol=1e-4)
    assert _input_of(unet, "score_8") == ["decoder2"] and _input_of(unet, "Logits") == ["decoder5"]
    np.testing.assert_array_equal(unet.get_layer("Logits").get_weights()[0], 0)

    plain = segmentation.unet("resnet18", classes=4, input_shape=SHAPE, coarse_scores=False)
    names = {layer.name for layer in plain.layers}
    assert {"score_8", "upscore", "fuse"} & names == set() and _input_of(plain, "Logits") == ["decoder5"]
    assert plain.count_params() == unet.count_params() - (128 * 4 + 4) - 16 * 16 * 4 * 4 + 4  # Logits' bias back
    with pytest.raises(TypeError, match="coarse_scores must be True or False, got coarse_scores='yes'"):
        segmentation.unet("resnet18", coarse_scores="yes")


def test_sizes_the_head_cannot_restore_are_refused_with_the_nearest_valid_one():
    with pytest.raises(ValueError, match=r"input_shape=\(100, 96, 3\): unet on resnet18 needs sides that are "
                                         r"multiples of 32; the nearest valid input is \(96, 96, 3\)"):
        segmentation.unet("resnet18", input_shape=(100, 96, 3))
    with pytest.raises(ValueError, match=r"multiples of 16; the nearest valid input is \(64, 112, 3\)"):
        segmentation.deeplab_v3("resnet18", input_shape=(64, 108, 3))
    with pytest.raises(ValueError, match=r"skips must be one of \(8, 16, 32\) .* got skips=4"):
        segmentation.fcn("resnet18", skips=4)
    with pytest.raises(ValueError, match="output_stride must be 16 or 8, got output_stride=32"):
        segmentation.deeplab_v3("resnet18", output_stride=32)
    with pytest.raises(ValueError, match=r"decoder_filters must be five positive integers"):
        segmentation.unet("resnet18", decoder_filters=(64, 32))
    with pytest.raises(ValueError, match="classes must be a positive integer, got classes=0"):
        segmentation.fcn("resnet18", classes=0)
    with pytest.raises(TypeError, match="freeze_backbone must be True or False, got freeze_backbone='yes'"):
        segmentation.unet("resnet18", freeze_backbone="yes")
    with pytest.raises(ValueError, match="dropout_rate must be a number >= 0 and < 1, got dropout_rate=1.5"):
        segmentation.deeplab_v3("resnet18", dropout_rate=1.5)


def test_valid_padding_that_misaligns_the_taps_is_refused_not_cropped():
    with pytest.raises(ValueError, match=r"endpoint 'Conv2d_7b_1x1' is \(1, 2\) for a \(96, 128\) input, not input / "
                                         r"32 = \(3, 4\) \(valid padding\); .* align_feature_maps=True"):
        segmentation.unet("inception_resnet_v2", input_shape=(96, 128, 3))


@pytest.fixture(scope="module")
def rgb_backbone(tmp_path_factory):
    """resnet18 without its top, random weights, saved as a Keras weights file."""
    model = randomize(kerasnets.resnet18(include_top=False, input_shape=(64, 64, 3)), seed=1)
    path = str(tmp_path_factory.mktemp("backbone") / "resnet18.weights.h5")
    model.save_weights(path)
    return model, path


@pytest.mark.parametrize("channels", [1, 6])
def test_pretrained_backbone_takes_other_channel_counts(rgb_backbone, channels):
    """The adapted first convolution (summed for 1 channel, repeated and scaled by 3/C) gives the RGB network's
    features for a gray image (1 channel) and for RGB repeated (6); every other weight is the file's."""
    reference, path = rgb_backbone
    model = segmentation.unet("resnet18", classes=2, backbone_weights=path, input_shape=(64, 64, channels))
    rgb = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    if channels == 1:
        rgb = np.repeat(rgb[..., :1], 3, axis=-1)
    images = rgb[..., :1] if channels == 1 else np.concatenate([rgb, rgb], axis=-1)
    features = keras.Model(model.input, model.get_layer("block4").output)
    assert rel_max_diff(features(images, training=False), reference(rgb, training=False)) <= 1e-5
    np.testing.assert_array_equal(model.get_layer("block4.unit_2.basic.conv2").get_weights()[0],
                                  reference.get_layer("block4.unit_2.basic.conv2").get_weights()[0])


def test_four_channels_follow_timms_rule_and_a_first_layer_that_cannot_adapt_is_named(rgb_backbone):
    _, path = rgb_backbone
    model = segmentation.fcn("resnet18", classes=2, backbone_weights=path, input_shape=(64, 64, 4))
    rgb_kernel = rgb_backbone[0].get_layer("conv1.Conv2D").get_weights()[0]
    expected = np.concatenate([rgb_kernel, rgb_kernel[:, :, :1]], axis=2) * 3 / 4
    np.testing.assert_allclose(model.get_layer("conv1.Conv2D").get_weights()[0], expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"backbone='inception_v2' starts with a SeparableConv2D"):
        segmentation.unet("inception_v2", backbone_weights=path, input_shape=(64, 64, 1))


def test_a_frozen_backbone_keeps_its_weights_and_the_head_trains():
    model = segmentation.unet("mobilenet_v1_025", classes=2, input_shape=(32, 32, 3), freeze_backbone=True)
    frozen = {layer.name for layer in model.layers if layer.weights and not layer.trainable}
    assert "Conv2d_0.Conv2D" in frozen and "Conv2d_13_pointwise.BatchNorm" in frozen
    assert not any(name.startswith(("decoder", "Logits", "score_8", "upscore")) for name in frozen)
    before = model.get_layer("Conv2d_0.Conv2D").get_weights()[0].copy()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(_images((32, 32, 3)), np.zeros((2, 32, 32), "int32"), epochs=1, verbose=0)
    np.testing.assert_array_equal(model.get_layer("Conv2d_0.Conv2D").get_weights()[0], before)


def test_a_built_backbone_is_used_as_it_is():
    backbone = kerasnets.resnet18(include_top=False, input_shape=(64, 64, 3))
    model = segmentation.fcn(backbone, classes=3)
    assert model.get_layer("conv1.Conv2D") is backbone.get_layer("conv1.Conv2D")
    with pytest.raises(ValueError, match=r"input_shape=\(100, 100, 3\): fcn on ResNet18 needs sides that are multiples "
                                         r"of 32; the nearest valid input is \(96, 96, 3\)"):
        segmentation.fcn(kerasnets.resnet18(include_top=False, input_shape=(100, 100, 3)))
    with pytest.raises(FileNotFoundError, match="weights='imagenet-1k': no such file"):
        segmentation.unet("resnet18", backbone_weights="imagenet-1k", input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match="backbone is a built model"):
        segmentation.fcn(backbone, backbone_weights="imagenet")
    with pytest.raises(TypeError, match="backbone must be a registered model name or a keras.Model, got backbone=3"):
        segmentation.fcn(3)


def test_readmes_example_runs_as_written():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf8").read()
    section = readme[readme.index("### Segmentation"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n", 10)]
    found = {}
    exec(code, found)
    assert found["unet"].output.shape == (None, 256, 256, 11)
    assert found["fcn8s"].output.shape == (None, None, None, 21) and found["fcn8s"].name == "fcn8s_VGG16"
    assert found["deeplab"](np.zeros((1, 64, 96, 4), "float32")).shape == (1, 64, 96, 2)
