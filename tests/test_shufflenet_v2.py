"""ShuffleNet v2: the channel shuffle against NumPy, torchvision's unit, TFLite (counts: test_resnext.py)."""

import numpy as np

import kerasnets
from kerasnets import export
from kerasnets.layers.shuffle import ChannelShuffle, ChannelSplit


def test_channel_shuffle_is_torchvisions():
    """torchvision's channel_shuffle on NCHW: view (N, g, C/g, H, W), transpose(1, 2), flatten; here on NHWC."""
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 12)).astype("float32")
    nchw = x.transpose(0, 3, 1, 2)
    expected = nchw.reshape(2, 3, 4, 3, 5).transpose(0, 2, 1, 3, 4).reshape(2, 12, 3, 5).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(np.asarray(ChannelShuffle(3)(x)), expected)
    first, second = ChannelSplit(2)(x)
    np.testing.assert_array_equal(np.asarray(first), x[..., :6])
    np.testing.assert_array_equal(np.asarray(second), x[..., 6:])


def test_units_split_shuffle_and_pad_as_torchvision():
    model = kerasnets.shufflenet_v2_x1_0(include_top=False, input_shape=(None, None, 3))
    assert isinstance(model.get_layer("Stage3.unit_2.split"), ChannelSplit)
    assert isinstance(model.get_layer("Stage3"), ChannelShuffle)
    assert model.get_layer("Stage3.unit_1.branch1.depthwise.Pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("Stage3.unit_1.branch2.depthwise").strides == (2, 2)
    assert not model.get_layer("Conv1.Conv2D").use_bias and model.get_layer("Conv1.BatchNorm").epsilon == 1e-5
    assert model(np.zeros((1, 96, 128, 3), "float32")).shape == (1, 3, 4, 1024)
    assert kerasnets.endpoints(model) == ["Conv1", "MaxPool", "Stage2", "Stage3", "Stage4", "Conv5"]


def test_exports_to_tflite_with_keras_outputs(tmp_path):
    """The split and the shuffle (slices, reshape, transpose) convert to TFLite; LiteRT gives Keras' outputs."""
    model = kerasnets.shufflenet_v2_x0_5(input_shape=(64, 64, 3), classes=3)
    path = str(tmp_path / "s.tflite")
    model.export(path, format="litert", verbose=False)
    images = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    runner = export.TFLiteRunner(path, threads=1)
    np.testing.assert_allclose(runner(images), model.predict(images, verbose=0), atol=1e-5)
