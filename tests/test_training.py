"""Training: pipelines, the digits learning test, mixed precision, transfer learning, resume, distribution."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnets
from kerasnets import cli, data, training
from image_folders import write_digits_folder

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits_folder(str(tmp_path_factory.mktemp("digits")))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """Flat ROOT/<label>/ folder: grayscale, RGBA and RGB images of odd sizes, and one corrupt file."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for label, channels in (("cat", 1), ("dog", 4), ("emu", 3)):
        os.makedirs(root / label)
        for i in range(8):
            image = rng.integers(0, 256, (20 + 7 * i, 33 + 3 * i, channels), dtype=np.uint8)
            encoded = tf.io.encode_png(image) if i % 2 else tf.io.encode_jpeg(image[..., :3] if channels == 4
                                                                                else image)
            tf.io.write_file(str(root / label / f"{i}.{'png' if i % 2 else 'jpg'}"), encoded)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "notes.txt").write_text("not a class folder")
    return str(root)


def test_pipeline_batches(mixed_folder):
    found = data.load(mixed_folder, 40, 4, data.Augmentation(color_jitter=True), validation_fraction=0.25)
    assert found.class_names == ["cat", "dog", "emu"]
    assert [os.path.basename(p) for p in found.skipped] == ["broken.jpg"]
    assert found.train_count + found.eval_count == 24
    for dataset in (found.train, found.eval):
        images, labels = next(iter(dataset))
        assert images.shape[1:] == (40, 40, 3) and images.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
        assert float(tf.reduce_max(images)) > 1.0  # raw pixel range, not [0, 1]
        assert labels.dtype == tf.int32 and set(labels.numpy()) <= {0, 1, 2}
    seen = sum(int(labels.shape[0]) for _, labels in found.train)
    assert seen == found.train_count  # a whole epoch goes through, the broken file skipped


def test_eval_is_a_central_crop(tmp_path):
    for label in ("a", "b"):
        os.makedirs(tmp_path / "train" / label)
        os.makedirs(tmp_path / "test" / label)
    image = np.zeros((64, 64, 3), np.uint8)
    image[4:60, 4:60] = 200  # the border (6.25 % each side) is black; the 0.875 central crop removes it
    for split in ("train", "test"):
        for label in ("a", "b"):
            tf.io.write_file(str(tmp_path / split / label / "x.png"), tf.io.encode_png(image))
    found = data.load(str(tmp_path), 28, 2)
    images, _ = next(iter(found.eval))
    assert float(tf.reduce_min(images)) > 150.0
    assert found.eval_name == "test"


def test_tfds_source_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        found = data.load("tfds:mnist", 32, 4)
        images, labels = next(iter(found.train))
    assert found.class_names == [str(i) for i in range(10)]
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
    assert found.train_count == 12 and found.eval_name == "test"


def test_train_nin_on_digits_reaches_90_percent(digits, tmp_path, capsys):
    output = str(tmp_path / "run")
    argv = ["train", "nin", "--model-arg", "batch_norm=True", "--data", digits, "--epochs", "6",
            "--image-size", "16", "--optimizer", "adam", "--lr", "0.003", "--min-crop-area", "0.7", "--no-flip",
            "--output", output, "--verbose", "0"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "data found: 1438 training images in 10 classes" in out and "model built" in out
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    print(f"digits test accuracy: {metrics['accuracy']:.4f}")
    assert metrics["accuracy"] >= 0.90
    assert metrics["epochs"] == 6 and metrics["images_skipped"] == 0 and "top5_accuracy" in metrics
    assert open(os.path.join(output, "labels.txt")).read().split() == [str(i) for i in range(10)]
    rows = training.read_history(os.path.join(output, "history.csv"))
    assert [int(r["epoch"]) for r in rows] == list(range(6))
    png = open(os.path.join(output, "training_curves.png"), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(os.path.join(output, "logs"))
    model = keras.saving.load_model(os.path.join(output, "model.keras"))
    # The saved model takes raw pixels (its normalisation is its first layer) and scores what metrics.json says.
    correct = total = 0
    for images, labels in data.load(digits, 16, 64).eval:
        correct += int(np.sum(np.argmax(model.predict(images, verbose=0), axis=1) == labels.numpy()))
        total += int(labels.shape[0])
    assert total == 359 and abs(correct / total - metrics["accuracy"]) < 1e-6
    # A second run into the same directory is refused.
    assert cli.main(argv) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_mixed_precision_on_cpu(mixed_folder, tmp_path, precision):
    model, history = training.train("nin", mixed_folder, image_size=16, epochs=1, batch_size=8,
                                    mixed_precision=precision, output=str(tmp_path / precision), verbose=0)
    assert model.get_layer("mlpconv1.conv").dtype_policy.name == f"mixed_{precision}"
    assert model.output.dtype == "float32"
    assert np.isfinite(history.history["loss"][0])
    if precision == "float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored


def test_transfer_learning_freezes_what_it_says(tmp_path):
    path = str(tmp_path / "backbone.weights.h5")
    kerasnets.resnet18(include_top=False, input_shape=(32, 32, 3)).save_weights(path)
    model = training.build_model("resnet18", 3, 32, weights=path)
    training.freeze(model, freeze_backbone=True)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 512 * 3 + 3
    frozen_norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert frozen_norms and not any(l.trainable for l in frozen_norms)

    model = training.build_model("resnet18", 3, 32, weights=path)
    training.freeze(model, fine_tune_from="block4")
    expected = sum(l.count_params() for l in model.layers
                   if (l.name.startswith("block4") and l.weights) or l.name in ("Logits",))
    expected -= sum(int(np.prod(v.shape)) for l in model.layers if l.name.startswith("block4")
                    for v in l.non_trainable_weights)  # batch-norm moving statistics
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == expected
    assert not model.get_layer("block3").trainable and model.get_layer("block4.unit_1.basic.conv1").trainable
    with pytest.raises(ValueError, match="'Mixed_6e' is not an endpoint of .*valid: \\['conv1'"):
        training.freeze(model, fine_tune_from="Mixed_6e")


def _run(args, **kwargs):
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def test_resume_after_sigkill(digits, tmp_path):
    output = str(tmp_path / "run")
    args = ["-m", "kerasnets", "train", "nin", "--data", digits, "--epochs", "3", "--image-size", "8",
            "--batch-size", "64", "--optimizer", "adam", "--output", output, "--verbose", "0"]
    process = _run(args)
    backup = os.path.join(output, "backup", "training_metadata.json")
    deadline = time.time() + 300
    while not os.path.exists(backup) and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert os.path.exists(backup), process.communicate()[0][-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(output, "model.keras"))
    rows_before = training.read_history(os.path.join(output, "history.csv"))
    assert len(rows_before) >= 1

    resumed = _run(args + ["--resume"])
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out[-2000:]
    epochs_run = [line for line in out.splitlines() if "] epoch " in line]
    assert len(epochs_run) == 3 - len(rows_before)
    rows = training.read_history(os.path.join(output, "history.csv"))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert rows[0] == rows_before[0]  # nothing written before is lost
    assert json.load(open(os.path.join(output, "metrics.json")))["epochs"] == 3
    assert not os.path.exists(os.path.join(output, "backup"))


MIRRORED = textwrap.dedent("""
    import sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.set_soft_device_placement(True)
    from kerasnets import training
    model, history = training.train("nin", sys.argv[1], image_size=8, epochs=1, batch_size=16,
                                    distribute="mirrored", output=sys.argv[2], verbose=0)
    print("loss", history.history["loss"][0])
""")


def test_mirrored_strategy_on_two_cpu_devices(mixed_folder, tmp_path):
    # MirroredStrategy uses logical devices of one type; we give it the two CPUs explicitly.
    script = MIRRORED.replace('distribute="mirrored"', 'distribute="mirrored"')
    process = _run(["-c", script, mixed_folder, str(tmp_path / "run")])
    out = process.communicate(timeout=600)[0]
    assert process.returncode == 0, out[-3000:]
    assert "2 replica(s)" in out
    assert "loss" in out.splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["train", "nin", "--data", "/no/such/folder"], "no such directory"),
    (["train", "nin", "--data", "tfds:no_such_dataset_xyz"], "has no dataset 'no_such_dataset_xyz'"),
    (["train", "nin_typo", "--data", "."], "Unknown model name"),
    (["train", "nin", "--data", "EMPTY"], "need at least 2"),
    (["train", "nin", "--data", "DIGITS", "--fine-tune-from", "Mixed_6e"], "is not an endpoint"),
])
def test_train_errors_are_one_line(argv, message, tmp_path, digits, capsys):
    os.makedirs(tmp_path / "empty" / "only_class")
    argv = [{"EMPTY": str(tmp_path / "empty"), "DIGITS": digits}.get(a, a) for a in argv]
    assert cli.main(argv + ["--output", str(tmp_path / "out"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("kerasnets: error:")


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_strategy_with_two_local_workers(mixed_folder, tmp_path):
    """Two worker processes on loopback (TF_CONFIG), through kerasnets' own multi-worker loop."""
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    output = str(tmp_path / "run")
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CONFIG": config}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "kerasnets", "train", "nin", "--data", mixed_folder, "--image-size", "8",
             "--epochs", "2", "--batch-size", "8", "--distribute", "multi-worker", "--output", output,
             "--verbose", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "2 replica(s)" in outputs[0]
    assert len([line for line in outputs[0].splitlines() if "] epoch " in line]) == 2
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert metrics["epochs"] == 2 and np.isfinite(metrics["loss"])
    assert os.path.exists(os.path.join(output, "model.keras"))
    assert os.path.exists(os.path.join(output, "worker_1", "model.keras"))  # the other worker's, kept apart


def test_training_continues_from_a_keras_file(mixed_folder, tmp_path):
    first, _ = training.train("nin", mixed_folder, image_size=12, epochs=1, batch_size=8,
                              output=str(tmp_path / "first"), verbose=0)
    saved = str(tmp_path / "first" / "model.keras")
    assert training.saved_input_size(saved) == 12  # read from config.json, no weights loaded
    # No image_size: the file's own input size is used, and training starts from the file's weights.
    second, history = training.train(saved, mixed_folder, epochs=1, batch_size=8, lr=1e-9,
                                     output=str(tmp_path / "second"), verbose=0)
    assert json.load(open(tmp_path / "second" / "run.json"))["image_size"] == 12
    for before, after in zip(first.weights, second.weights):
        np.testing.assert_allclose(after.numpy(), before.numpy(), atol=1e-6)  # a tiny lr: still the file's


def test_training_from_a_file_that_is_not_a_keras_archive(mixed_folder, tmp_path):
    bogus = tmp_path / "bogus.keras"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bogus.keras.*not a functional model saved by Keras 3"):
        training.train(str(bogus), mixed_folder, epochs=1, output=str(tmp_path / "out"), verbose=0)
    assert not os.path.exists(tmp_path / "out")  # refused before anything was written


def test_training_from_a_keras_file_checks_the_image_size(mixed_folder, tmp_path):
    fixed, free = str(tmp_path / "fixed.keras"), str(tmp_path / "free.keras")
    kerasnets.nin(input_shape=(12, 12, 3), classes=3).save(fixed)
    kerasnets.nin(input_shape=(None, None, 3), classes=3).save(free)
    assert training.saved_input_size(free) is None
    with pytest.raises(ValueError, match=r"image_size=16, but MODEL .*fixed.keras' takes 12x12 images"):
        training.train(fixed, mixed_folder, image_size=16, output=str(tmp_path / "a"), verbose=0)
    with pytest.raises(ValueError, match=r"free.keras' accepts any image size; give image_size"):
        training.train(free, mixed_folder, output=str(tmp_path / "b"), verbose=0)
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")
