"""Export: every format runs and agrees with the Keras model; int8 keeps accuracy on real data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kerasnets import cli, data, export, training
from image_folders import write_digits_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """NIN trained on scikit-learn's digits with the default recipe, as `kerasnets train` leaves it."""
    root = tmp_path_factory.mktemp("export")
    digits = write_digits_folder(str(root / "digits"))
    training.train("nin", digits, image_size=16, epochs=8, output=str(root / "run"), verbose=0)
    return {"model": str(root / "run" / "model.keras"), "digits": digits, "root": root}


@pytest.mark.parametrize("fmt, quantize", [("saved_model", "none"), ("tflite", "none"), ("tflite", "float16"),
                                           ("tflite", "dynamic"), ("tflite", "int8")])
def test_each_format_exports_reloads_and_agrees(trained, tmp_path, fmt, quantize):
    output = str(tmp_path / ("sm" if fmt == "saved_model" else f"nin_{quantize}.tflite"))
    path, card = export.export(trained["model"], format=fmt, quantize=quantize, data=trained["digits"], output=output)
    assert path == output and os.path.exists(output)
    assert json.load(open(export.card_path(output))) == card
    figures = card["verification"]
    assert figures["images"] == 359
    if "max_abs_diff" in figures["tolerance"]:
        assert figures["max_abs_diff"] <= figures["tolerance"]["max_abs_diff"]
    else:
        assert figures["top1_agreement"] >= figures["tolerance"]["top1_agreement"]
    assert card["input"]["dtype"] == ("uint8" if quantize == "int8" else "float32")
    assert open(tmp_path / "labels.txt").read().split() == [str(i) for i in range(10)]
    # Reloaded independently of the export code, the artifact classifies like the Keras model.
    images, _ = export.sample_images(export.load_model(trained["model"])[0], trained["digits"])
    probabilities = export.run_artifact(output)(images[:64])
    assert probabilities.shape == (64, 10)


def test_int8_tflite_on_raw_uint8_pixels_keeps_accuracy(trained, tmp_path):
    output = str(tmp_path / "nin_int8.tflite")
    export.export(trained["model"], format="tflite", quantize="int8", data=trained["digits"], output=output)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=output, num_threads=2)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    model = export.load_model(trained["model"])[0]
    images, labels = export.sample_images(model, trained["digits"])
    keras_accuracy = np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels)
    scale, zero = inp["quantization"]
    correct = 0
    for image, label in zip(images, labels):
        pixels = np.round(image).astype(np.uint8)[None]  # what a camera gives
        interpreter.set_tensor(inp["index"], np.clip(np.round(pixels / scale + zero), 0, 255).astype(np.uint8))
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == label)
    int8_accuracy = correct / len(labels)
    print(f"digits test accuracy: keras {keras_accuracy:.4f}, int8 TFLite {int8_accuracy:.4f}")
    assert keras_accuracy >= 0.8  # a trained model (chance is 0.1)
    assert abs(int8_accuracy - keras_accuracy) <= 0.01


def test_saved_model_bytes_signature_classifies_a_png(trained, tmp_path):
    output = str(tmp_path / "sm")
    export.export(trained["model"], output=output, verify=False)
    png_path = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(trained["digits"], "test"))
                      for f in fs)[5]
    contents = tf.io.read_file(png_path)
    loaded = tf.saved_model.load(output)
    from_bytes = loaded.signatures[export.BYTES_SIGNATURE](image_bytes=tf.stack([contents]))["probabilities"].numpy()
    model = export.load_model(trained["model"])[0]
    image = data.eval_transform(tf.io.decode_png(contents, channels=3), model.input_shape[1])
    np.testing.assert_allclose(from_bytes, model.predict(image[None], verbose=0), atol=1e-5)


def test_inception_v3_exports_to_tflite(tmp_path):
    output = str(tmp_path / "inception.tflite")
    _, card = export.export("inception_v3", format="tflite", output=output, model_args={"depth_multiplier": 0.1})
    assert card["verification"]["max_abs_diff"] <= 1e-4
    assert card["input"]["shape"] == [None, 299, 299, 3]


def test_predict_prints_top_k(trained, tmp_path, capsys):
    sm = str(tmp_path / "sm")
    export.export(trained["model"], output=sm, verify=False)
    image = os.path.join(trained["digits"], "test", "3", sorted(os.listdir(os.path.join(trained["digits"], "test",
                                                                                       "3")))[0])
    capsys.readouterr()
    outputs = []
    for artifact in (trained["model"], sm):
        assert cli.main(["predict", artifact, image, "--top-k", "3"]) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith(f"{image}: ") and len(line.split(",")) == 3
        outputs.append(line.split(": ")[1].split()[0])
    assert outputs[0] == outputs[1] == "3"


def test_refuses_to_overwrite(trained, tmp_path, capsys):
    output = str(tmp_path / "nin.tflite")
    argv = ["export", trained["model"], "--format", "tflite", "--output", output, "--no-verify"]
    assert cli.main(argv) == 0
    before = open(output, "rb").read()
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert open(output, "rb").read() == before
    assert cli.main(argv + ["--overwrite"]) == 0


def test_an_export_never_replaces_other_labels_and_predict_reads_its_own(trained, tmp_path, capsys):
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "labels.txt").write_text("cat\ndog\n")  # another model's labels, already in the folder
    output = str(folder / "nin.tflite")
    argv = ["export", trained["model"], "--format", "tflite", "--output", output, "--no-verify"]
    assert cli.main(argv) == 2
    assert "holds other labels" in capsys.readouterr().err
    assert (folder / "labels.txt").read_text() == "cat\ndog\n" and not os.path.exists(output)
    # Into a folder of its own: the card carries the labels, and predict reads them there, not from labels.txt.
    output = str(tmp_path / "own" / "nin.tflite")
    assert cli.main(["export", trained["model"], "--format", "tflite", "--output", output, "--no-verify"]) == 0
    assert json.load(open(export.card_path(output)))["labels"] == [str(i) for i in range(10)]
    (tmp_path / "own" / "labels.txt").write_text("\n".join(f"wrong{i}" for i in range(10)))
    image = os.path.join(trained["digits"], "test", "7", sorted(os.listdir(os.path.join(trained["digits"], "test", "7")))[0])
    top = export.predict(output, [image], top_k=3)[0]
    assert all(label in [str(i) for i in range(10)] for label, _ in top)


@pytest.mark.parametrize("argv, message", [
    (["export", "/no/such/model.keras"], "no such .keras file"),
    (["export", "MODEL", "--format", "onnx"], "invalid choice: 'onnx'"),
    (["export", "MODEL", "--format", "tflite", "--quantize", "int8"], "needs --data"),
    (["export", "MODEL", "--quantize", "dynamic"], "applies to --format tflite only"),
    (["predict", "MODEL", "NOT_AN_IMAGE"], "is not a readable image"),
    (["predict", "/no/such.tflite", "x.png"], "no such file"),
])
def test_errors_are_one_line(trained, tmp_path, argv, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    argv = [{"MODEL": trained["model"], "NOT_AN_IMAGE": str(bad)}.get(a, a) for a in argv]
    result = subprocess.run([sys.executable, "-m", "kerasnets", *argv], capture_output=True, text=True)
    assert result.returncode != 0
    err = [line for line in result.stderr.splitlines() if line.startswith("kerasnets")]
    assert err and message in err[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
