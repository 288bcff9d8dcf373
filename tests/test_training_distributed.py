"""Distributed training: MirroredStrategy on two CPU devices, two workers on loopback (TF_CONFIG)."""

import json
import os
import signal
import subprocess
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets import data, distributed, training
from children import free_ports, run_python, wait_for_backup
from segmentation_reference import pixel_scores


MIRRORED = textwrap.dedent("""
    import sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    tf.config.set_soft_device_placement(True)
    from kerasnets import training
    model, history = training.train("nin", sys.argv[1], image_size=8, epochs=1, batch_size=16,
                                    distribute="mirrored", output=sys.argv[2], verbose=0, mixed_precision="off")
    print("loss", history.history["loss"][0])
""")


def test_mirrored_strategy_on_two_cpu_devices(mixed_folder, tmp_path):
    """MirroredStrategy over two logical CPUs; the history's validation figures count every image once, as
    metrics.json's (NIN has no batch norm to recompute and trains in float32 here, so the last epoch's model is
    the one scored): on 5 test images Keras' own validation pads a sixth for the second replica."""
    output = tmp_path / "run"
    process = run_python(["-c", MIRRORED, mixed_folder, str(output)])
    out = process.communicate(timeout=600)[0]
    assert process.returncode == 0, out[-3000:]
    assert "2 replica(s)" in out
    assert "loss" in out.splitlines()[-1]
    metrics = json.load(open(output / "metrics.json"))
    last = training.read_history(str(output / "history.csv"))[-1]
    assert metrics["eval_images"] % 2 == 1 and metrics["batch_norm_statistics_batches"] == 0
    assert float(last["val_loss"]) == pytest.approx(metrics["loss"], rel=1e-5)
    assert float(last["val_accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-6)


def test_two_local_workers_end_with_one_model_and_exact_metrics(digits, tmp_path):
    """Two worker processes on loopback (TF_CONFIG): the issue's resnet18 run on the digits.

    Both workers save the same model, batch-norm statistics included (each would
    otherwise keep those of its own shard), and metrics.json is a single-process
    `model.evaluate` of the chief's model.keras: every test image counted once.
    """
    workers = [f"localhost:{port}" for port in free_ports(2)]
    output = str(tmp_path / "run")
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(run_python(["-m", "kerasnets", "train", "resnet18", "--data", digits, "--image-size", "32",
                               "--epochs", "2", "--batch-size", "32", "--distribute", "multi-worker",
                               "--output", output, "--verbose", "0"], env={**os.environ, "TF_CONFIG": config}))
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "2 replica(s)" in outputs[0]
    assert len([line for line in outputs[0].splitlines() if "] epoch " in line]) == 2

    chief = keras.saving.load_model(os.path.join(output, "model.keras"))
    other = keras.saving.load_model(os.path.join(output, "worker_1", "model.keras"))  # kept apart
    assert [v.path for v in chief.weights] == [v.path for v in other.weights]
    assert any("moving_variance" in v.path for v in chief.weights)
    for mine, theirs in zip(chief.weights, other.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    eval_ds = data.load(digits, 32, 64).eval.map(lambda image, label: (image, tf.one_hot(label, 10)))
    images = np.concatenate([x.numpy() for x, _ in eval_ds])
    np.testing.assert_array_equal(chief.predict(images, verbose=0), other.predict(images, verbose=0))

    settings = json.load(open(os.path.join(output, "run.json")))
    chief.compile(loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings["recipe"]["label_smoothing"]),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                           keras.metrics.TopKCategoricalAccuracy(5, name="top5_accuracy")])
    expected = chief.evaluate(eval_ds, verbose=0, return_dict=True)
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert metrics["epochs"] == 2 and metrics["eval_images"] == 359
    for name in ("accuracy", "top5_accuracy"):  # counts: every test image once
        assert metrics[name] == pytest.approx(expected[name], abs=1e-5), name
    # A mean of floats over other batches: oneDNN's convolutions round differently by batch size (2e-5 seen, 5.6e-4
    # once while the other test worker loaded the cores).
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=2e-3)

    # Trained about as well as one process with the same global batch, epochs and seed. Neither run is
    # bit-reproducible (thread scheduling), and each worker's batch norm sees half the batch. Measured pairs
    # (two workers, one process): 0.911/0.936, 0.883/0.944, 0.922/0.928, 0.897/0.911; chance is 0.10.
    training.train("resnet18", digits, image_size=32, epochs=2, batch_size=32, distribute="off",
                   output=str(tmp_path / "single"), verbose=0)
    single = json.load(open(tmp_path / "single" / "metrics.json"))["accuracy"]
    print(f"resnet18 on digits, 2 epochs, batch 32: test accuracy {metrics['accuracy']:.4f} on two workers, "
          f"{single:.4f} in one process")
    assert metrics["accuracy"] >= 0.8 and single >= 0.8
    assert metrics["accuracy"] >= single - 0.08


def test_two_workers_resume_after_one_dies(digits, tmp_path):
    """A worker killed mid-run: the chief waits in an all-reduce, is stopped, and both resume from the backup."""
    workers = [f"localhost:{port}" for port in free_ports(2)]
    output = str(tmp_path / "run")
    args = ["-m", "kerasnets", "train", "nin", "--data", digits, "--image-size", "8", "--epochs", "4",
            "--batch-size", "32", "--distribute", "multi-worker", "--output", output, "--verbose", "0"]

    def start(extra=()):
        return [run_python(args + list(extra), env={**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}) for index in range(2)]

    first = start()
    wait_for_backup(first, output)
    first[1].send_signal(signal.SIGKILL)
    try:
        first[0].wait(timeout=15)  # it waits for the dead worker in its next all-reduce, or fails
    except subprocess.TimeoutExpired:
        first[0].send_signal(signal.SIGKILL)
    for process in first:
        process.communicate()
    assert not os.path.exists(os.path.join(output, "model.keras"))
    assert not os.path.exists(os.path.join(output, "worker_1", "backup"))  # only the chief's backup exists
    rows_before = training.read_history(os.path.join(output, "history.csv"))
    assert 1 <= len(rows_before) < 4

    second = start(["--resume"])
    outputs = [p.communicate(timeout=600)[0] for p in second]
    for process, out in zip(second, outputs):
        assert process.returncode == 0, out[-3000:]
    assert len([line for line in outputs[0].splitlines() if "] epoch " in line]) == 4 - len(rows_before)
    rows = training.read_history(os.path.join(output, "history.csv"))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3] and rows[0] == rows_before[0]
    chief = keras.saving.load_model(os.path.join(output, "model.keras"))
    other = keras.saving.load_model(os.path.join(output, "worker_1", "model.keras"))
    for mine, theirs in zip(chief.weights, other.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)


def test_two_local_workers_train_a_segmentation_head_with_exact_metrics(tmp_path):
    """The multi-worker loop (kerasnets' own, not Keras' fit) on masks: unet/resnet18 on two workers; both save the
    same model, and metrics.json's IoU counts every test pixel once (Keras' MeanIoU over the chief's model.keras);
    masks with an ignored band (255) of varying width leave it out of the loss and the IoU."""
    from image_folders import digits_on_photos, write_segmentation_folder

    root = str(tmp_path / "strokes")
    for split, count in (("train", 64), ("test", 21)):
        images, masks = digits_on_photos(count, 32, 2, 0, split)
        for n, mask in enumerate(masks):  # VOC's "ignore", on a band at the left edge, 0-6 columns wide
            mask[:, :n % 7] = 255
        write_segmentation_folder(root, images, masks, split)
    workers = [f"localhost:{port}" for port in free_ports(2)]
    output = str(tmp_path / "run")
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(run_python(["-m", "kerasnets", "train", "unet", "--backbone", "resnet18", "--data", root,
                                     "--image-size", "32", "--epochs", "1", "--batch-size", "16",
                                     "--distribute", "multi-worker", "--output", output, "--verbose", "0"],
                                    env={**os.environ, "TF_CONFIG": config}))
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "2 replica(s)" in outputs[0]

    chief = keras.saving.load_model(os.path.join(output, "model.keras"))
    other = keras.saving.load_model(os.path.join(output, "worker_1", "model.keras"))
    for mine, theirs in zip(chief.weights, other.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    chief.compile(metrics=[keras.metrics.MeanIoU(2, sparse_y_pred=False, ignore_class=255, name="mean_iou")])
    # (batches of 16 as the run scored them: oneDNN rounds by batch size, and a near-tie pixel could flip)
    test_split = data.load_segmentation(root, 32, 16).eval
    keras_scores = chief.evaluate(test_split, verbose=0, return_dict=True)
    expected = pixel_scores(chief, test_split, 2)
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    print(f"unet/resnet18 on two workers, 1 epoch: {metrics}; expected {expected}")
    assert metrics["epochs"] == 1 and metrics["eval_images"] == 21
    assert metrics["mean_iou"] == pytest.approx(keras_scores["mean_iou"], abs=1e-6)
    assert metrics["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-6)
    assert metrics["mean_iou"] == pytest.approx(np.mean(metrics["iou_per_class"]), abs=1e-6)
    # the mean over the pixels counted (not over each image's or batch's mean: the bands differ in width)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)


def test_scoring_takes_the_cross_entropy_from_the_logits_as_keras_evaluate_does():
    """An image the model gets confidently wrong (p = e^-60 for its class) counts its full loss: Keras' compiled
    `evaluate` takes a softmax output's logits, where probabilities would be clipped at 1e-7 (16.1)."""
    inputs = keras.Input((2,))
    logits = keras.layers.Dense(2, kernel_initializer="identity", bias_initializer="zeros")(inputs)
    model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    images = np.array([[60.0, 0.0], [0.0, 3.0], [1.0, 0.0]], "float32")
    labels = tf.one_hot([1, 1, 0], 2)
    eval_ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    expected = np.mean([60.0 + np.log1p(np.exp(-60.0)), np.log1p(np.exp(-3.0)), np.log1p(np.exp(-1.0))])

    model.compile(loss=keras.losses.CategoricalCrossentropy(), metrics=[keras.metrics.CategoricalAccuracy()])
    keras_loss = model.evaluate(eval_ds, verbose=0, return_dict=True)["loss"]
    ours = distributed.evaluate(model, eval_ds, keras.losses.CategoricalCrossentropy(),
                                [keras.metrics.CategoricalAccuracy(name="accuracy")])
    assert keras_loss == pytest.approx(expected, rel=1e-5)
    assert ours["loss"] == pytest.approx(expected, rel=1e-5)
    assert ours["accuracy"] == pytest.approx(2 / 3)
