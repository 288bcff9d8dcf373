"""Export: every format runs and agrees with the Keras model; int8 keeps accuracy on real data."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnets
from kerasnets import cli, data, export, graph, tflite_metadata
import without_kerasnets
from readme_runs import readme_first_run
from torch_reference import torchvision
from weight_files import randomize, write_keras_applications_h5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """NIN trained on scikit-learn's digits with the defaults: README's first training example, as it leaves it
    (shared with test_training_readme.py: read it, write elsewhere)."""
    run = readme_first_run(tmp_path_factory)
    assert run["rc"] == 0
    return {"model": os.path.join(run["output"], "model.keras"), "digits": run["digits"]}


@pytest.mark.parametrize("fmt, quantize", [("saved_model", "none"), ("tflite", "none"), ("tflite", "float16"),
                                           ("tflite", "dynamic"), ("tflite", "int8")])
def test_each_format_exports_reloads_and_agrees(trained, tmp_path, fmt, quantize):
    output = str(tmp_path / ("sm" if fmt == "saved_model" else f"nin_{quantize}.tflite"))
    path, card = export.export(trained["model"], format=fmt, quantize=quantize, data=trained["digits"], output=output)
    assert path == output and os.path.exists(output)
    assert json.load(open(export.card_path(output))) == card
    assert set(card["verification"]) == ({"tensorflow"} if fmt == "saved_model" else {"litert", "mediapipe"})
    for figures in card["verification"].values():
        assert figures["images"] == 359
        if "max_abs_diff" in figures["tolerance"]:
            assert figures["max_abs_diff"] <= figures["tolerance"]["max_abs_diff"]
        else:
            assert figures["top1_agreement_within_ties"] >= figures["tolerance"]["top1_agreement_within_ties"]
    assert card["input"]["dtype"] == ("uint8" if quantize == "int8" else "float32")
    assert open(tmp_path / "labels.txt").read().split() == [str(i) for i in range(10)]
    # Reloaded independently of the export code, the artifact classifies like the Keras model.
    images, _ = export.sample_images(export.load_model(trained["model"])[0], trained["digits"])
    probabilities = export.run_artifact(output)(images[:64])
    assert probabilities.shape == (64, 10)


def test_quantized_verification_counts_near_ties_as_agreement():
    expected = np.array([[0.500, 0.498, 0.002],   # a tie: either of the first two is Keras' answer
                         [0.800, 0.150, 0.050],   # decided
                         [0.300, 0.300, 0.400]])  # decided
    got = np.array([[0.49, 0.50, 0.01], [0.10, 0.85, 0.05], [0.2, 0.2, 0.6]])
    figures, ok = export.compare(expected, got, "tflite", "int8")
    assert figures["top1_agreement"] == pytest.approx(1 / 3)
    assert figures["top1_agreement_within_ties"] == pytest.approx(2 / 3) and not ok  # 0.67 < 0.8
    figures, ok = export.compare(expected, np.array([got[0], expected[1], got[2]]), "tflite", "int8")
    assert figures["top1_agreement_within_ties"] == 1.0 and ok


def test_int8_tflite_on_raw_uint8_pixels_keeps_accuracy(trained, tmp_path):
    output = str(tmp_path / "nin_int8.tflite")
    export.export(trained["model"], format="tflite", quantize="int8", data=trained["digits"], output=output)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=output, num_threads=2)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    # The pixel bytes are the input as they are (unquantized: cast to float and quantized inside, by operators
    # XNNPACK runs), as MediaPipe feeds them.
    assert inp["quantization"] == (0.0, 0)
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert ops[:2] == ["CAST", "QUANTIZE"], ops
    model = export.load_model(trained["model"])[0]
    images, labels = export.sample_images(model, trained["digits"])
    keras_accuracy = np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels)
    correct = 0
    for image, label in zip(images, labels):
        pixels = np.round(image).astype(np.uint8)[None]  # what a camera gives
        interpreter.set_tensor(inp["index"], pixels)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == label)
    int8_accuracy = correct / len(labels)
    print(f"digits test accuracy: keras {keras_accuracy:.4f}, int8 TFLite {int8_accuracy:.4f}")
    assert keras_accuracy >= 0.8  # a trained model (chance is 0.1)
    assert abs(int8_accuracy - keras_accuracy) <= 0.01


def test_an_int8_file_writes_each_quantization_vector_once():
    """Per-channel scales and zero points as the converter wrote them, each distinct vector stored once."""
    from ai_edge_litert.interpreter import Interpreter
    from mediapipe.tasks.metadata import schema_py_generated as model_fb

    inputs = keras.Input((16, 16, 3))
    x = inputs
    for filters in (32, 32, 64, 64):  # two of each width: equal zero-point vectors to share
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.uniform(0, 1, (1, 16, 16, 3)).astype("float32")]
                                                for _ in range(8))
    converted = converter.convert()
    written = tflite_metadata.populate(converted, tflite_metadata.classifier_metadata("m", "test", "1", "test"))

    def zero_point_vectors(content):
        graph = model_fb.Model.GetRootAs(bytearray(content), 0).Subgraphs(0)
        tensors = [graph.Tensors(i).Quantization() for i in range(graph.TensorsLength())]
        vectors = [q.ZeroPointAsNumpy() for q in tensors if q is not None and q.ZeroPointLength() > 1]
        where = {(v.__array_interface__["data"][0], v.nbytes) for v in vectors}  # views into the file's bytes
        return vectors, where, {v.tobytes() for v in vectors}

    vectors, where, distinct = zero_point_vectors(converted)
    count = len(vectors)
    assert count >= 8 and len(where) == count and len(distinct) == 3  # the converter: a vector per per-channel tensor
    vectors, where, distinct = zero_point_vectors(written)
    assert len(vectors) == count and len(where) == len(distinct) == 3  # 32, 64 and 4 zeros, stored once each

    # What LiteRT reads is the converter's model: every tensor's quantization, and the scores, bit for bit.
    image = rng.uniform(0, 1, (1, 16, 16, 3)).astype("float32")
    read = []
    for content in (converted, written):
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
        interpreter.invoke()
        tensors = [(t["name"], t["dtype"], list(t["shape"]), t["quantization_parameters"])
                   for t in interpreter.get_tensor_details()]
        read.append((tensors, interpreter.get_tensor(interpreter.get_output_details()[0]["index"])))
    assert len(read[0][0]) == len(read[1][0])
    for before, after in zip(read[0][0], read[1][0]):
        assert before[:3] == after[:3]
        for key in ("scales", "zero_points", "quantized_dimension"):
            np.testing.assert_array_equal(before[3][key], after[3][key], err_msg=f"{before[0]}: {key}")
    np.testing.assert_array_equal(read[0][1], read[1][1])


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_mediapipe_image_classifier_reads_the_export_as_an_app_would(trained, tmp_path, quantize):
    """MediaPipe Tasks loads the file as written, classifies as well as Keras, and names every answer."""
    output = str(tmp_path / f"nin_{quantize}.tflite")
    export.export(trained["model"], format="tflite", quantize=quantize, data=trained["digits"], output=output)
    model = export.load_model(trained["model"])[0]
    images, labels = export.sample_images(model, trained["digits"])
    images = np.round(images)  # camera pixels
    keras_accuracy = float(np.mean(np.argmax(model.predict(images, verbose=0), -1) == labels))
    with export.MediaPipeClassifier(output) as classifier:
        scores = classifier(images)
    answers = [names[int(np.argmax(row))] for row, names in zip(scores, classifier.names)]
    mediapipe_accuracy = float(np.mean([answer == str(label) for answer, label in zip(answers, labels)]))
    print(f"digits test accuracy ({quantize}): keras {keras_accuracy:.4f}, MediaPipe {mediapipe_accuracy:.4f}")
    assert keras_accuracy >= 0.8 and abs(mediapipe_accuracy - keras_accuracy) <= 0.01
    assert all(names == {i: str(i) for i in range(10)} for names in classifier.names)

    # The metadata read back with the schema: what the model does with its input, its labels and size.
    metadata = tflite_metadata.read(open(output, "rb").read())
    assert metadata["labels"] == open(os.path.join(os.path.dirname(trained["model"]), "labels.txt")).read().split()
    assert metadata["input"]["mean"] == [0.0] and metadata["input"]["std"] == [1.0]  # normalised in the graph
    assert metadata["input"]["color_space"] == "RGB"
    assert metadata["input"]["shape"] == [1, *model.input_shape[1:]]
    assert metadata["input"]["dtype"] == ("uint8" if quantize == "int8" else "float32")
    assert metadata["output"]["shape"] == [1, 10] and metadata["author"].startswith("kerasnets ")
    if quantize == "int8":
        _run_readme_phone_example(output, tmp_path)


def test_an_export_with_imagenet_weights_names_imagenets_classes(tmp_path, monkeypatch):
    """A phone app answers "goldfish", not "1": published weights' class names go into the file's metadata."""
    categories = torchvision().models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    entry = kerasnets.get_config("mobilenet_v1_025").weights_file("imagenet", include_top=True)
    (tmp_path / "models").mkdir()  # keras.applications' file, random numbers, where a download would put it
    write_keras_applications_h5(randomize(keras.applications.MobileNet(weights=None, alpha=0.25)),
                                str(tmp_path / "models" / entry.filename))
    output = str(tmp_path / "export" / "mobilenet.tflite")
    _, card = export.export("mobilenet_v1_025", format="tflite", weights="imagenet", output=output)
    assert card["labels"] == categories and len(set(categories)) == 1000
    assert tflite_metadata.read(open(output, "rb").read())["labels"] == categories
    assert open(tmp_path / "export" / "labels.txt").read().splitlines() == categories
    with export.MediaPipeClassifier(output) as classifier:
        classifier(np.zeros((1, 224, 224, 3), "float32"))
        assert classifier.names[0] == dict(enumerate(categories))
    # TF-slim's 1001 classes start with its background class, which classes=1000 (the builders' default) drops;
    # another number of classes, or features without the classifier, have no names.
    slim = kerasnets.get_config("mobilenet_v1_025").pretrained("imagenet_slim")
    assert slim.class_names() == slim.class_names(1001) == ["background", *categories]
    assert slim.class_names(1000) == categories and slim.class_names(5) is None
    assert kerasnets.get_config("inception_v1").pretrained("imagenet").class_names(1000) == categories
    notop = write_keras_applications_h5(
        randomize(keras.applications.MobileNet(weights=None, alpha=0.25, include_top=False)),
        str(tmp_path / "models" / kerasnets.get_config("mobilenet_v1_025").weights_file("imagenet", False).filename))
    net, _, labels = export.load_model("mobilenet_v1_025", "imagenet", {"include_top": False, "pooling": "avg"})
    assert os.path.exists(notop) and net.output_shape == (None, 256) and labels is None


def _run_readme_phone_example(tflite, tmp_path):
    """README's Python MediaPipe example, as written, on this export and a real photo."""
    from sklearn.datasets import load_sample_images

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf8").read()
    section = readme[readme.index("### On a phone"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    photo = str(tmp_path / "photo.jpg")
    tf.io.write_file(photo, tf.io.encode_jpeg(load_sample_images().images[0]))
    code = code.replace('"nin_int8.tflite"', repr(tflite)).replace('"photo.jpg"', repr(photo))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = eval(result.stdout.strip().splitlines()[-1])  # [(category_name, score), ...]
    assert len(answers) == 3 and all(name in [str(i) for i in range(10)] for name, _ in answers), answers


def test_predict_reads_label_names_from_the_tflite_itself(trained, tmp_path):
    """labels.txt and the card stay beside the file for people; the file alone is enough."""
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained["model"], run / "model.keras")
    (run / "labels.txt").write_text("\n".join(names) + "\n")
    output = str(tmp_path / "export" / "digits.tflite")
    export.export(str(run / "model.keras"), format="tflite", output=output, verify=False)
    os.remove(export.card_path(output))
    os.remove(tmp_path / "export" / "labels.txt")
    image = os.path.join(trained["digits"], "test", "7", sorted(os.listdir(os.path.join(trained["digits"], "test", "7")))[0])
    top = export.predict(output, [image], top_k=3)[0]
    assert {label for label, _ in top} <= set(names)
    assert top[0][0] == export.predict(str(run / "model.keras"), [image], top_k=1)[0][0][0]  # Keras' answer


# The artifacts must run with TensorFlow / LiteRT alone.
WITH_TF_AND_LITERT = """
import numpy as np, tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
images = np.load(sys.argv[1])
served = tf.saved_model.load(sys.argv[2]).signatures["serving_default"]
np.save(sys.argv[4], served(images=tf.constant(images))["probabilities"].numpy())
interpreter = Interpreter(model_path=sys.argv[3])
interpreter.allocate_tensors()
rows = []
for image in images:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
np.save(sys.argv[5], np.stack(rows))
"""


def test_exports_run_without_kerasnets(trained, tmp_path):
    sm, tflite = str(tmp_path / "sm"), str(tmp_path / "nin.tflite")
    export.export(trained["model"], output=sm, verify=False)
    export.export(trained["model"], format="tflite", output=tflite, verify=False)
    model = export.load_model(trained["model"])[0]
    images = np.round(export.sample_images(model, trained["digits"])[0][:16]).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    result = without_kerasnets.run(WITH_TF_AND_LITERT, tmp_path / "images.npy", sm, tflite, tmp_path / "sm.npy",
                                   tmp_path / "tflite.npy")
    assert result.returncode == 0, result.stderr[-3000:]
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "sm.npy"), expected, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "tflite.npy"), expected, atol=1e-4)


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
    assert card["verification"]["litert"]["max_abs_diff"] <= 1e-4
    assert card["verification"]["mediapipe"]["max_abs_diff"] <= 1e-4
    assert card["input"]["shape"] == [None, 299, 299, 3]
    # No labels known (a registry model built with its classes only): none written, and MediaPipe answers
    # with indices alone.
    assert card["labels"] is None and not os.path.exists(tmp_path / "labels.txt")
    assert tflite_metadata.read(open(output, "rb").read())["labels"] is None
    with export.MediaPipeClassifier(output) as classifier:
        classifier(np.full((1, 299, 299, 3), 128.0))
    assert len(classifier.names[0]) == 1000 and set(classifier.names[0].values()) <= {None, ""}


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


@pytest.mark.parametrize("mode", ["torch", "rgb_mean", "tf"])
def test_a_per_channel_normalisation_runs_on_whole_rows_in_tflite(mode, tmp_path):
    """LiteRT's XNNPACK applies a 3-value constant pixel by pixel (5-7x slower); the export tiles it along rows."""
    from kerasnets.layers.preprocessing import preprocessing

    inputs = keras.Input((32, 32, 3), name="image")  # (the export takes square images)
    normalise, conv = preprocessing(mode), keras.layers.Conv2D(4, 3, padding="same", activation="relu")
    x = conv(normalise(inputs))
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    path, _ = export.export(model, format="tflite", output=str(tmp_path / "m.tflite"))
    assert graph.parents(conv) == [normalise]  # the model's own graph is as it was (one call of each layer)
    runner = export.TFLiteRunner(path)
    ops = [op["op_name"] for op in runner.interpreter._get_ops_details()]
    before_conv = ops[:ops.index("CONV_2D")]  # rows of width x 3 values, scaled (not rgb_mean's 1) and offset
    if mode == "tf":  # one scale and one offset: nothing to tile
        assert "RESHAPE" not in before_conv, ops
    else:
        assert before_conv[0] == before_conv[-1] == "RESHAPE" and len(before_conv) == (4 if mode == "torch" else 3), ops
    assert ops.count("DELEGATE") == 1, ops  # one XNNPACK partition: shapes are static
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(runner(images), model.predict(images, verbose=0), atol=1e-6)
