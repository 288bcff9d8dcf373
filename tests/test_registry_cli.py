"""Registry and command line."""

import json
import os
import subprocess
import sys

import pytest

import kerasnets
from kerasnets import analysis, cli
import without_kerasnets


def test_list_models_and_pattern():
    assert "inception_v3" in kerasnets.list_models()
    assert kerasnets.list_models("inception*") == ["inception_resnet_v2", "inception_v1", "inception_v2",
                                                   "inception_v3", "inception_v4"]
    assert kerasnets.list_models("nothing*") == []


def test_segmentation_heads_are_registered_models(capsys):
    heads = ["deeplab_v3", "fcn16s", "fcn32s", "fcn8s", "unet"]
    assert kerasnets.list_models(task="segmentation") == heads
    assert set(heads) <= set(kerasnets.list_models())
    assert not set(heads) & set(kerasnets.list_models(task="classification"))
    with pytest.raises(ValueError, match=r"task must be None or one of \('classification', 'segmentation'\), "
                                         r"got task='detection'"):
        kerasnets.list_models(task="detection")
    unet = kerasnets.create_model("unet", backbone="mobilenet_v1_025", classes=11, input_shape=(64, 64, 3))
    assert unet.output.shape[1:] == (64, 64, 11) and unet.get_layer("Conv2d_13_pointwise") is not None
    assert cli.main(["list", "unet"]) == 0
    assert "segmentation head on resnet18 (--backbone: any classifier)" in capsys.readouterr().out
    # summary on another backbone: its endpoints, then the decoder's, whose maps grow back to the input's size.
    assert cli.main(["summary", "unet", "--backbone", "mobilenet_v1_025", "--input-size", "64", "--json"]) == 0
    rows = {row["endpoint"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["Conv2d_13_pointwise"]["output_shape"] == [2, 2, 256]
    assert rows["decoder5"]["output_shape"] == [64, 64, 16] and rows["Predictions"]["output_shape"] == [64, 64, 21]
    assert rows["total"]["params"] == kerasnets.create_model(
        "unet", backbone="mobilenet_v1_025", input_shape=(64, 64, 3)).count_params()
    assert cli.main(["summary", "resnet18", "--backbone", "vgg16"]) == 2
    assert "--backbone applies to segmentation heads" in capsys.readouterr().err


def test_create_model_passes_arguments():
    model = kerasnets.create_model("inception_v3", include_top=False, depth_multiplier=0.1, input_shape=(75, 75, 3))
    assert kerasnets.endpoints(model)[-1] == "Mixed_7c"


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="Unknown model name 'inception_v5'.*Did you mean: inception_v"):
        kerasnets.create_model("inception_v5")


def test_config_is_data():
    config = kerasnets.get_config("inception_v3")
    assert (config.default_size, config.min_size, config.preprocessing, config.classes) == (299, 75, "tf", 1000)
    published = config.pretrained("imagenet")
    assert (published.layout, published.classes, published.label_offset, published.input_size) == (
        "keras_applications", 1000, 0, 299)
    assert published.top1 == 77.9 and published.top1_source == "https://keras.io/api/applications/"
    assert {w.include_top for w in published.files} == {True, False}
    assert all(w.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
               for w in published.files)
    with pytest.raises(ValueError, match=r"weights='jft': no published weights .* Available: \['imagenet', "
                                         r"'torchvision'\]"):
        config.pretrained("jft")
    assert kerasnets.list_models(pretrained=True) == [
        "inception_resnet_v2", "inception_v1", "inception_v2", "inception_v3", "inception_v4", "mobilenet_v1_025",
        "mobilenet_v1_050", "mobilenet_v1_075", "mobilenet_v1_100", "resnet101",
        "resnet101_v2", "resnet152", "resnet152_v2", "resnet18", "resnet34", "resnet50", "resnet50_v2",
        "resnext101_32x8d", "resnext50_32x4d",
        "seresnet50", "seresnext101_32x4d", "seresnext50_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
        "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "vgg16", "vgg19", "xception"]


def test_summary_rows_add_up():
    model = kerasnets.inception_v3(depth_multiplier=0.1, input_shape=(75, 75, 3), aux_logits=False)
    rows = analysis.summarize(model)
    assert rows[-1]["endpoint"] == "total"
    assert sum(r["params"] for r in rows[:-1]) == rows[-1]["params"] == model.count_params()
    assert [r["endpoint"] for r in rows[:-1]] == kerasnets.endpoints(model)
    # Conv2d_1a_3x3: 3x3x3 kernel to max(int(32*0.1), 16) = 16 filters, plus beta/mean/variance.
    assert rows[0]["params"] == 3 * 3 * 3 * 16 + 3 * 16


def test_cli_summary_json(capsys):
    assert cli.main(["summary", "inception_v3", "--input-size", "139", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"endpoint": "Conv2d_1a_3x3", "output_shape": [69, 69, 32], "params": 960,
                       "macs": 3 * 3 * 3 * 32 * 69 * 69, "receptive_field": 3, "effective_stride": 2,
                       "effective_padding": 0}
    assert rows[-1]["endpoint"] == "total" and rows[-1]["params"] == 23_851_784


def test_cli_summary_of_a_keras_file(tmp_path, capsys):
    path = str(tmp_path / "nin.keras")
    kerasnets.nin(input_shape=(32, 32, 3)).save(path)
    assert cli.main(["summary", path, "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert cli.main(["summary", "nin", "--input-size", "32", "--json"]) == 0
    assert from_file == json.loads(capsys.readouterr().out)
    assert cli.main(["summary", path, "--input-size", "64"]) == 2
    assert "has its own input size" in capsys.readouterr().err
    assert cli.main(["summary", path, "--backbone", "resnet18"]) == 2
    assert "--backbone applies to registry names of segmentation heads" in capsys.readouterr().err
    assert cli.main(["summary", path, "--variant", "torchvision"]) == 2
    assert "--variant applies to registry names; MODEL" in capsys.readouterr().err
    assert cli.main(["summary", str(tmp_path / "missing.keras")]) == 2
    assert "no such .keras file" in capsys.readouterr().err


def test_cli_list_reads_data_and_builds_nothing(capsys, monkeypatch):
    import keras

    def no_building(*args, **kwargs):
        raise AssertionError("kerasnets list built a model")

    monkeypatch.setattr(keras.Model, "__init__", no_building)
    assert cli.main(["list", "resnet5*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "input", "classes", "params", "MACs", "weights", "(top-1", "%)"]
    assert lines[1].split() == ["resnet50", "224", "1000", "25,636,712", "3,857,973,248", "imagenet", "(74.9),",
                                "torchvision", "(80.858),", "torchvision_v1", "(76.13),", "timm:resnet50.a1_in1k",
                                "(80.382)"]
    assert lines[2].split()[:4] == ["resnet50_v2", "224", "1000", "25,613,800"] and len(lines) == 3


@pytest.mark.parametrize("argv, message", [
    (["summary", "inception_v9"], "Unknown model name 'inception_v9'"),
    (["summary", "inception_v3", "--input-size", "32"], "at least 75"),
    (["list", "zzz*"], "no registered model matches"),
])
def test_cli_errors_are_one_line(argv, message):
    result = subprocess.run([sys.executable, "-m", "kerasnets", *argv], capture_output=True, text=True)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stderr.startswith("kerasnets: error:") and result.stderr.count("\n") == 1, result.stderr


QUICK_START = """
import sys
from kerasnets import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("imported:", sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "numpy"}), "code:", code)
"""


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["train", "--help"], 0),
    (["train", "nin", "--data", "d", "--epochs", "0"], 2),
    (["export", "m.keras", "--quantize", "int4"], 2),
    (["predict", "m.tflite", "a.png", "--precision", "int8"], 2),
])
def test_help_and_argument_errors_need_no_tensorflow(argv, code):
    result = subprocess.run([sys.executable, "-c", QUICK_START, *argv], capture_output=True, text=True)
    assert result.stdout.splitlines()[-1] == f"imported: [] code: {code}", result.stdout + result.stderr


def test_commands_start_quietly():
    """No TensorFlow start-up lines (oneDNN, CUDA stubs, cuInit), which ignore TF_CPP_MIN_LOG_LEVEL."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "kerasnets", "summary", "nin"], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0 and result.stdout.startswith("model NIN\nendpoint"), result.stderr
    assert result.stderr == "", result.stderr


def test_fast_predict_equals_keras_predict():
    import numpy as np

    from kerasnets import model as model_lib

    model = kerasnets.inception_v3(depth_multiplier=0.1, input_shape=(107, 107, 3), classes=4, aux_logits=True)
    assert type(model).__name__ == "Functional" and model.fast_predict
    images = np.random.default_rng(0).uniform(-1, 1, (7, 107, 107, 3)).astype("float32")
    fast = model.predict(images, batch_size=3, verbose=0)  # 3 + 3 + 1: the remainder batch too
    model.fast_predict = False
    slow = model.predict(images, batch_size=3, verbose=0)
    assert len(fast) == len(slow) == 2
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    model.fast_predict = True
    # One trace serves every batch size; inputs are cast to the model's dtype, as Keras' own path does.
    np.testing.assert_allclose(model.predict(images.astype("float64"), batch_size=5, verbose=0)[0], slow[0],
                               rtol=1e-6, atol=1e-7)
    assert model_lib._forward(model, images.shape[1:]).experimental_get_tracing_count() == 1  # batches of 3, 1, 5, 2
    with pytest.raises(ValueError, match=r"x has shape \(7, 99, 99, 3\).*\(None, 107, 107, 3\)"):
        model.predict(np.zeros((7, 99, 99, 3), "float32"))
    with pytest.raises(ValueError, match="x holds no images"):
        model.predict(images[:0])
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        model.predict(images, batch_size=0)
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict(images, verbose=0)[0], slow[0], rtol=1e-4, atol=1e-6)


PLAIN_KERAS = """
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
print(type(model).__name__)
"""


def test_a_builder_model_the_user_saves_opens_with_keras_alone(tmp_path):
    import keras
    import numpy as np

    model = kerasnets.nin(batch_norm=True)
    path = str(tmp_path / "nin.keras")
    model.save(path)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    result = without_kerasnets.run(PLAIN_KERAS, path, tmp_path / "images.npy", tmp_path / "plain.npy")
    assert result.returncode == 0 and result.stdout.split() == ["Functional"], result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), model.predict(images, verbose=0))
    loaded = kerasnets.load_model(path)  # through kerasnets: the fast predict comes back
    assert type(loaded).__name__ == "Functional" and loaded.fast_predict
    np.testing.assert_array_equal(model.predict(images, verbose=0), loaded.predict(images, verbose=0))
    # A whole-model file of kerasnets 0.1 (class KerasnetsModel) still loads, with kerasnets imported.
    legacy = kerasnets.KerasnetsModel(model.input, model.output, name=model.name)
    legacy.save(tmp_path / "legacy.keras")
    old = keras.saving.load_model(tmp_path / "legacy.keras")
    assert type(old).__name__ == "KerasnetsModel"
    np.testing.assert_array_equal(old.predict(images, verbose=0), loaded.predict(images, verbose=0))


def test_a_keras_file_written_by_kerasnets_0_1_still_loads_and_predicts_the_same():
    """tests/data/nin_kerasnets_0.1.keras: a NIN (batch norm, random weights, logits) saved by main before the
    layout of issue 12, with its outputs on four images."""
    import keras
    import numpy as np

    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    path = os.path.join(data, "nin_kerasnets_0.1.keras")
    reference = np.load(os.path.join(data, "nin_kerasnets_0.1_outputs.npz"))
    loaded = {"kerasnets": kerasnets.load_model(path),
              "keras, once kerasnets.model is imported": keras.saving.load_model(path),
              "as weights": kerasnets.nin(batch_norm=True, classifier_activation=None, weights=path)}
    assert type(loaded["kerasnets"]).__name__ == "KerasnetsModel" and loaded["kerasnets"].fast_predict
    for how, model in loaded.items():
        np.testing.assert_allclose(model.predict(reference["images"], verbose=0), reference["outputs"], rtol=1e-5,
                                   atol=1e-6, err_msg=how)


def test_tensorflows_held_start_up_lines_are_shown_when_it_fails_to_load(tmp_path):
    """The CLI holds TF's start-up lines back; if importing TF fails, they are what explains it, so they show."""
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.write(2, b'held: cannot load libtensorflow_cc.so.2\\n')\n"
                                      "raise ImportError('tensorflow is broken here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run([sys.executable, "-m", "kerasnets", "summary", "nin"], capture_output=True, text=True,
                            env=env)
    assert result.returncode != 0
    assert "held: cannot load libtensorflow_cc.so.2" in result.stderr
    assert "tensorflow is broken here" in result.stderr


def test_export_refuses_labels_that_do_not_name_every_class(tmp_path):
    import keras

    from kerasnets import export
    from kerasnets.layers import raw_pixel_input

    inputs, x = raw_pixel_input(16, "tf")
    net = kerasnets.nin(input_tensor=x, classes=3)
    run = tmp_path / "run"
    run.mkdir()
    keras.Model(inputs, net.output).save(run / "model.keras")
    (run / "labels.txt").write_text("cat\ndog\n")
    with pytest.raises(ValueError, match="MODEL 'run' predicts 3 classes but its labels name 2"):
        export.export(str(run / "model.keras"), output=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_model_open_to_any_size_predicts_every_size_from_one_trace():
    import numpy as np

    from kerasnets import model as model_lib

    model = kerasnets.nin(input_shape=(None, None, 3), classes=4)
    rng = np.random.default_rng(0)
    for side in (16, 24, 40):
        images = rng.uniform(-1, 1, (3, side, side + 8, 3)).astype("float32")
        np.testing.assert_allclose(model.predict(images, verbose=0), model(images, training=False), rtol=1e-5,
                                   atol=1e-6)
    assert list(model._kerasnets_forwards) == [(False, None)]
    assert model_lib._forward(model, (16, 24, 3)).experimental_get_tracing_count() == 1
