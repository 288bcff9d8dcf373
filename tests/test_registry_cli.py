"""Registry and command line."""

import json
import os
import subprocess
import sys

import pytest

import kerasnets
from kerasnets import analysis, cli


def test_list_models_and_pattern():
    assert "inception_v3" in kerasnets.list_models()
    assert kerasnets.list_models("inception*") == ["inception_v3"]
    assert kerasnets.list_models("nothing*") == []


def test_create_model_passes_arguments():
    model = kerasnets.create_model("inception_v3", include_top=False, depth_multiplier=0.1, input_shape=(75, 75, 3))
    assert kerasnets.endpoints(model)[-1] == "Mixed_7c"


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="Unknown model name 'inception_v4'.*Did you mean: inception_v3"):
        kerasnets.create_model("inception_v4")


def test_config_is_data():
    config = kerasnets.get_config("inception_v3")
    assert (config.default_size, config.min_size, config.preprocessing, config.classes) == (299, 75, "tf", 1000)
    assert {w.include_top for w in config.weights["imagenet"]} == {True, False}
    assert all(w.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
               for w in config.weights["imagenet"])


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
    assert cli.main(["summary", str(tmp_path / "missing.keras")]) == 2
    assert "no such .keras file" in capsys.readouterr().err


def test_cli_list(capsys):
    assert cli.main(["list"]) == 0
    assert "inception_v3" in capsys.readouterr().out


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
    assert result.returncode == 0 and result.stdout.startswith("endpoint"), result.stderr
    assert result.stderr == "", result.stderr


def test_fast_predict_equals_keras_predict():
    import numpy as np

    from kerasnets.model import KerasnetsModel

    model = kerasnets.inception_v3(depth_multiplier=0.1, input_shape=(107, 107, 3), classes=4, aux_logits=True)
    assert isinstance(model, KerasnetsModel) and model.fast_predict
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
    assert model._forward().experimental_get_tracing_count() == 1  # batches of 3, 1, 5 and 2
    with pytest.raises(ValueError, match=r"x has shape \(7, 99, 99, 3\).*\(None, 107, 107, 3\)"):
        model.predict(np.zeros((7, 99, 99, 3), "float32"))
    with pytest.raises(ValueError, match="x holds no images"):
        model.predict(images[:0])
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        model.predict(images, batch_size=0)
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict(images, verbose=0)[0], slow[0], rtol=1e-4, atol=1e-6)


def test_models_save_and_load_as_keras_files(tmp_path):
    import keras
    import numpy as np

    model = kerasnets.nin(batch_norm=True)
    path = str(tmp_path / "nin.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded).__name__ == "KerasnetsModel"
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(images, verbose=0), loaded.predict(images, verbose=0))
