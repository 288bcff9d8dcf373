"""ResNeXt, the SE networks and ShuffleNet v2's published counts and costs; the SE unit and grouped and separable
convolutions by hand."""

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets import analysis
from kerasnets.layers import attention

# Trainable parameters as torchvision (resnext, shufflenet) and timm (se*) publish them, and multiply-adds at
# 224x224: Xie et al. table 1 (ResNeXt-50 32x4d: 4.2e9), Hu et al. table 2 (SE-ResNeXt-50: 4.25e9),
# torchvision's weights metadata (ResNeXt-101 32x8d: 16.41e9 ops), Ma et al. table 5 (ShuffleNet v2).
PUBLISHED = {
    "resnext50_32x4d": (25_028_904, 4.2e9),
    "resnext101_32x8d": (88_791_336, 16.41e9),
    "seresnet50": (28_088_024, None),  # the paper's 3.87e9 is for stride in the first 1x1; see below
    "seresnext50_32x4d": (27_559_896, 4.25e9),
    "shufflenet_v2_x0_5": (1_366_792, 41e6),
    "shufflenet_v2_x1_0": (2_278_604, 146e6),
    "shufflenet_v2_x1_5": (3_503_624, 299e6),
    "shufflenet_v2_x2_0": (7_393_996, 591e6),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_are_the_published_ones(name):
    params, macs = PUBLISHED[name]
    model = kerasnets.create_model(name)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == params
    total = sum(analysis.layer_macs(layer) for layer in model.layers)
    if macs is not None:
        assert total == pytest.approx(macs, rel=0.03)
    if name.startswith("se"):
        # Hu et al. table 2: SE-ResNet-50 costs 3.87e9 against ResNet-50's 3.86e9; the SE units stay under 1%.
        se = sum(analysis.layer_macs(layer) for layer in model.layers if ".se." in layer.name)
        assert 0 < se / total < 0.01


def test_squeeze_excitation_by_hand():
    """On a 2x2 map of 32 channels: mean over the map, relu(W1 s + b1), sigmoid(W2 z + b2), times the input."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 2, 2, 32)).astype("float32")
    inputs = keras.Input((2, 2, 32))
    model = keras.Model(inputs, attention.squeeze_excitation(16)(inputs, "unit"))
    fc1, fc2 = model.get_layer("unit.se.fc1"), model.get_layer("unit.se.fc2")
    assert fc1.filters == 2 and fc2.filters == 32
    for layer in (fc1, fc2):
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    w1, b1 = fc1.get_weights()
    w2, b2 = fc2.get_weights()
    squeezed = x.mean(axis=(1, 2))[0]
    hidden = np.maximum(squeezed @ w1[0, 0] + b1, 0)
    scale = 1 / (1 + np.exp(-(hidden @ w2[0, 0] + b2)))
    np.testing.assert_allclose(model(x).numpy(), x * scale, rtol=1e-5, atol=1e-6)


def test_the_notes_arithmetic_of_grouped_and_separable_convolutions():
    """A 3x3 convolution 256 -> 256 has 589,824 weights, 73,728 in 8 groups; a depthwise separable one costs
    1/256 + 1/9 of a full one, in weights and in multiply-adds (Howard et al. 2017, section 3.1)."""
    inputs = keras.Input((14, 14, 256))
    layers = {"full": keras.layers.Conv2D(256, 3, padding="same", use_bias=False),
              "grouped": keras.layers.Conv2D(256, 3, padding="same", use_bias=False, groups=8),
              "separable": keras.layers.SeparableConv2D(256, 3, padding="same", use_bias=False)}
    model = keras.Model(inputs, [layer(inputs) for layer in layers.values()])
    assert model is not None
    assert layers["full"].count_params() == 589_824 and layers["grouped"].count_params() == 73_728
    full, separable = (analysis.layer_macs(layers[k]) for k in ("full", "separable"))
    assert full == 589_824 * 14 * 14 and analysis.layer_macs(layers["grouped"]) == 73_728 * 14 * 14
    assert separable / full == pytest.approx(1 / 256 + 1 / 9)
    assert layers["separable"].count_params() / layers["full"].count_params() == pytest.approx(1 / 256 + 1 / 9)


def test_resnext_bottleneck_is_torchvisions():
    """Stride in the grouped 3x3 (padded 1 on every side), no biases, batch-norm epsilon 1e-5."""
    model = kerasnets.resnext50_32x4d(include_top=False, input_shape=(64, 64, 3))
    conv2 = model.get_layer("block2.unit_1.bottleneck.conv2")
    assert conv2.strides == (2, 2) and conv2.groups == 32 and conv2.filters == 256 and not conv2.use_bias
    assert model.get_layer("block2.unit_1.bottleneck.conv1").strides == (1, 1)
    assert model.get_layer("block2.unit_1.bottleneck.conv2.Pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("conv1.BatchNorm").epsilon == 1e-5
    assert model.output.shape == (None, 2, 2, 2048)
