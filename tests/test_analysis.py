"""Analysis: MACs, parameters and receptive fields against hand computations and published tables."""

import json
import shutil

import keras
import pytest

import kerasnets
from kerasnets import analysis, cli


def _model(inputs, outputs):
    return keras.Model(inputs, outputs)


def test_seed_example_1x1_reduction_saves_weights():
    """The seeds' Inception example: 28x28x192, 32 1x1 filters then 256 3x3 vs 256 direct 3x3 filters."""
    inputs = keras.Input((28, 28, 192))
    reduced = keras.layers.Conv2D(32, 1, use_bias=False, name="reduce")(inputs)
    reduced = keras.layers.Conv2D(256, 3, padding="same", use_bias=False, name="out")(reduced)
    direct = keras.layers.Conv2D(256, 3, padding="same", use_bias=False, name="out")(inputs)
    with_reduction, without = _model(inputs, reduced), _model(inputs, direct)
    assert with_reduction.count_params() == 79_872 and without.count_params() == 442_368
    assert sum(analysis.layer_macs(l) for l in with_reduction.layers) == 79_872 * 28 * 28
    assert sum(analysis.layer_macs(l) for l in without.layers) == 442_368 * 28 * 28


def test_seed_example_depthwise_separable():
    """The seeds' Xception example: 3x3 depthwise + 1x1 pointwise, 16 channels to 32: 656 weights."""
    inputs = keras.Input((10, 10, 16))
    separable = _model(inputs, keras.layers.SeparableConv2D(32, 3, padding="same", use_bias=False)(inputs))
    assert separable.count_params() == 656
    assert analysis.layer_macs(separable.layers[-1]) == 656 * 100
    depthwise = _model(inputs, keras.layers.DepthwiseConv2D(3, use_bias=False)(inputs))
    assert analysis.layer_macs(depthwise.layers[-1]) == 3 * 3 * 16 * 8 * 8


def test_grouped_conv_and_dense_macs():
    inputs = keras.Input((8, 8, 16))
    x = keras.layers.Conv2D(32, 3, groups=4, strides=2, padding="same", name="grouped")(inputs)
    y = keras.layers.Dense(10, name="fc")(keras.layers.Flatten()(x))
    model = _model(inputs, y)
    assert analysis.layer_macs(model.get_layer("grouped")) == 3 * 3 * (16 // 4) * 32 * 4 * 4
    assert analysis.layer_macs(model.get_layer("fc")) == 4 * 4 * 32 * 10


def test_transposed_conv_macs_are_those_of_its_adjoint_convolution():
    """A transposed convolution is the gradient of a strided convolution from its output back to its input: the
    same products, so the same multiply-adds (FCN's and U-Net's learnable upsampling)."""
    inputs = keras.Input((8, 6, 21))
    up = keras.layers.Conv2DTranspose(5, 16, strides=8, padding="same", name="up")(inputs)
    down = keras.layers.Conv2D(21, 16, strides=8, padding="same", name="down")(up)
    model = _model(inputs, down)
    assert model.get_layer("down").output.shape[1:3] == (8, 6)
    assert analysis.layer_macs(model.get_layer("up")) == analysis.layer_macs(model.get_layer("down")) \
        == 8 * 6 * 16 * 16 * 21 * 5


def test_receptive_field_of_a_conv_pool_chain():
    # Hand-computed with r += (k-1) * S, P += p * S, S *= s (Araujo et al. 2019):
    # conv 3x3/1 valid: r 3, S 1, P 0; maxpool 2x2/2: r 4, S 2, P 0; conv 3x3/1 same (p 1): r 8, S 2, P 2;
    # conv 5x5/2 valid: r 16, S 4, P 2.
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, name="a")(inputs)
    x = keras.layers.MaxPooling2D(2, name="b")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c")(x)
    x = keras.layers.Conv2D(4, 5, strides=2, name="d")(x)
    fields = analysis.receptive_fields(_model(inputs, x))
    assert [fields[n] for n in "abcd"] == [((3, 3), (1, 1), (0, 0)), ((4, 4), (2, 2), (0, 0)),
                                           ((8, 8), (2, 2), (2, 2)), ((16, 16), (4, 4), (2, 2))]


def test_receptive_field_of_a_two_branch_block():
    # Branches 1x1 (r 1, P 0) and 5x5 same (r 5, P 2) share the centre (r-1)/2 - P = 0: the block has r 5.
    # A 1x3 / 3x1 fork is r 1x3 and 3x1 per axis: together 3x3.
    inputs = keras.Input((16, 16, 8))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    b = keras.layers.Conv2D(4, 5, padding="same", name="b")(inputs)
    block = keras.layers.Concatenate(name="block")([a, b])
    c = keras.layers.Conv2D(4, (1, 3), padding="same", name="c")(block)
    d = keras.layers.Conv2D(4, (3, 1), padding="same", name="d")(block)
    fork = keras.layers.Concatenate(name="fork")([c, d])
    fields = analysis.receptive_fields(_model(inputs, fork))
    assert fields["block"] == ((5, 5), (1, 1), (2, 2))
    assert fields["fork"] == ((7, 7), (1, 1), (3, 3))
    # A stride-2 'same' 3x3 on an even size pads 0 on the left; beside a 1x1/2 shortcut the centres differ.
    inputs = keras.Input((16, 16, 8))
    main = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    shortcut = keras.layers.Conv2D(4, 1, strides=2)(inputs)
    merged = keras.layers.Add(name="add")([main, shortcut])
    assert analysis.receptive_fields(_model(inputs, merged))["add"] == analysis.UNALIGNED


@pytest.fixture(scope="module")
def inception_rows():
    return analysis.summarize("inception_v3")


def test_inception_v3_matches_published_figures(inception_rows):
    rows = {r["endpoint"]: r for r in inception_rows}
    # Araujo et al. 2019, table 1: Inception v3 receptive field 1311, effective stride 32, padding 618.
    assert (rows["Mixed_7c"]["receptive_field"], rows["Mixed_7c"]["effective_stride"],
            rows["Mixed_7c"]["effective_padding"]) == (1311, 32, 618)
    assert rows["total"]["params"] == 23_851_784
    assert sum(r["params"] for r in inception_rows[:-1]) == rows["total"]["params"]
    assert sum(r["macs"] for r in inception_rows[:-1]) == rows["total"]["macs"]
    assert 5.6e9 < rows["total"]["macs"] < 5.8e9  # the paper's ~5.7 billion multiply-adds
    assert rows["Conv2d_1a_3x3"]["macs"] == 3 * 3 * 3 * 32 * 149 * 149
    assert rows["Logits"]["receptive_field"] is None


# google-research/receptive_field's table (computed on TF-slim's networks; Araujo et al. 2019, table 1):
# model -> (last endpoint, receptive field, effective stride, effective padding).
SLIM_RECEPTIVE_FIELDS = {
    "inception_v2": ("Mixed_5c", 699, 32, 318),
    "inception_v4": ("Mixed_7d", 2071, 32, 998),
    "inception_resnet_v2": ("Conv2d_7b_1x1", 3039, 32, 1482),
}


@pytest.mark.parametrize("name", sorted(SLIM_RECEPTIVE_FIELDS))
def test_inception_family_matches_the_published_receptive_fields(name):
    endpoint, field, stride, padding = SLIM_RECEPTIVE_FIELDS[name]
    row = next(r for r in analysis.summarize(name) if r["endpoint"] == endpoint)
    assert (row["receptive_field"], row["effective_stride"], row["effective_padding"]) == (field, stride, padding)


def test_resnet50_receptive_field():
    rows = {r["endpoint"]: r for r in analysis.summarize("resnet50")}
    # Araujo et al. 2019, table 1: ResNet-50 r 483, S 32, P 241.
    assert (rows["block4"]["receptive_field"], rows["block4"]["effective_stride"],
            rows["block4"]["effective_padding"]) == (483, 32, 241)


def test_summary_json_and_table(capsys):
    assert cli.main(["summary", "nin", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert set(rows[0]) == {"endpoint", "output_shape", "params", "macs", "receptive_field", "effective_stride",
                            "effective_padding"}
    assert rows[-1]["endpoint"] == "total" and rows[-1]["params"] == 966_986
    assert rows[0]["receptive_field"] == 5  # mlpconv1: a 5x5 conv and two 1x1s
    assert cli.main(["summary", "resnet18", "--input-size", "64"]) == 0
    table = capsys.readouterr().out
    assert "block4" in table and "2x2x512" in table and "MACs count convolutions" in table


def test_list_prints_params_and_macs(capsys):
    assert cli.main(["list", "nin*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:6] == ["model", "input", "classes", "params", "MACs", "weights"]
    assert out[1].split()[:4] == ["nin", "32", "10", "966,986"]
    assert out[1].split()[4] == f"{analysis.summarize('nin')[-1]['macs']:,}"


def test_plot(tmp_path, capsys):
    path = str(tmp_path / "nin.png")
    code = cli.main(["summary", "nin", "--plot", path])
    try:
        import pydot  # noqa: F401
        available = shutil.which("dot") is not None
    except ImportError:
        available = False
    if available:
        assert code == 0 and open(path, "rb").read()[:4] == b"\x89PNG"
    else:
        assert code == 2 and "--plot needs" in capsys.readouterr().err


def test_summary_input_size_with_a_model_is_refused():
    with pytest.raises(ValueError, match="input_size=64 differs"):
        analysis.summarize(kerasnets.nin(), input_size=64)
