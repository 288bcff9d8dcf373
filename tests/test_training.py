"""Training: pipelines, the digits learning test, mixed precision, transfer learning, resume, distribution."""

import dataclasses
import json
import math
import os
import shlex
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
from kerasnets import cli, data, export, precision, recipes, training
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


def test_tfds_real_import_path_offline(tmp_path):
    """tfds as a user meets it: tfds' registered `mnist` builder, prepared offline, trained on by the CLI.

    Also the call a fresh download makes before touching the network (a builder's checksums), which
    failed on a fresh install with "No module named 'importlib_resources'".
    """
    from image_folders import prepare_digits_as_tfds_mnist

    data_dir = prepare_digits_as_tfds_mnist(tmp_path / "tensorflow_datasets")
    output = str(tmp_path / "run")
    env = {"TFDS_DATA_DIR": data_dir}
    check = _run(["-c", "import tensorflow_datasets as tfds; print(len(tfds.builder('imagenette').url_infos))"],
                 env={**os.environ, **env})
    out = check.communicate(timeout=300)[0]
    assert check.returncode == 0 and int(out.split()[-1]) > 0, out[-2000:]  # its download URLs
    process = _run(["-m", "kerasnets", "train", "nin", "--data", "tfds:mnist", "--image-size", "8", "--epochs", "1",
                    "--output", output, "--verbose", "0"], env={**os.environ, **env})
    out = process.communicate(timeout=600)[0]
    assert process.returncode == 0, out[-2000:]
    assert "data found: 1438 training images in 10 classes, 359 for evaluation (test)" in out
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert metrics["eval_images"] == 359 and metrics["eval_split"] == "test"
    assert open(os.path.join(output, "labels.txt")).read().split() == [str(i) for i in range(10)]


README = os.path.join(TESTS, "..", "README.md")


def readme_training_commands():
    """The `kerasnets train` lines of README's Training section, comments dropped."""
    text = open(README, encoding="utf8").read()
    section = text[text.index("## Training"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("kerasnets train")]
    assert len(commands) >= 4, block
    return commands


@pytest.fixture(scope="module")
def readme_runs(digits, tmp_path_factory):
    """README's training examples run as written (ROOT: the digits folder; runs/ in a temporary directory)."""
    runs = str(tmp_path_factory.mktemp("readme") / "runs")
    results = {}
    for command in readme_training_commands():
        argv = shlex.split(command.replace("ROOT", digits).replace("runs/", runs + "/"))
        assert argv[0] == "kerasnets"
        output = argv[argv.index("--output") + 1]
        results[os.path.basename(output)] = {"argv": argv[1:], "rc": cli.main(argv[1:] + ["--verbose", "0"]),
                                             "output": output}
    return results


def test_readme_training_examples_learn_with_the_defaults(readme_runs):
    assert set(readme_runs) == {"nin", "resnet18", "head", "tuned"}
    expected_recipes = {"nin": "scratch", "resnet18": "scratch", "head": "train-head", "tuned": "fine-tune"}
    for name, run in readme_runs.items():
        assert run["rc"] == 0, name
        metrics = json.load(open(os.path.join(run["output"], "metrics.json")))
        settings = json.load(open(os.path.join(run["output"], "run.json")))
        print(f"{name}: test accuracy {metrics['accuracy']:.4f} ({settings['mixed_precision']})")
        assert metrics["accuracy"] >= 0.90, (name, metrics)
        assert metrics["warnings"] == [], name
        assert settings["recipe"]["name"] == expected_recipes[name]
        assert settings["mixed_precision"] == precision.resolve("auto")
    # NIN has no batch norm; the resnets' statistics are recomputed after training (frozen ones are kept).
    assert json.load(open(os.path.join(readme_runs["nin"]["output"], "metrics.json")))[
        "batch_norm_statistics_batches"] == 0
    assert json.load(open(os.path.join(readme_runs["resnet18"]["output"], "metrics.json")))[
        "batch_norm_statistics_batches"] == 45


def test_a_training_run_leaves_what_it_promises(readme_runs, digits, capsys):
    run = readme_runs["nin"]
    output = run["output"]
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert metrics["epochs"] == 8 and metrics["images_skipped"] == 0 and "top5_accuracy" in metrics
    assert metrics["train_images"] == 1438 and metrics["eval_images"] == 359
    assert metrics["eval_central_crop"] == data.CENTRAL_FRACTION == 0.875
    assert open(os.path.join(output, "labels.txt")).read().split() == [str(i) for i in range(10)]
    rows = training.read_history(os.path.join(output, "history.csv"))
    assert [int(r["epoch"]) for r in rows] == list(range(8))
    png = open(os.path.join(output, "training_curves.png"), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(os.path.join(output, "logs"))
    settings = json.load(open(os.path.join(output, "run.json")))
    assert settings["recipe"] == dataclasses.asdict(recipes.resolve("scratch", epochs=8))
    model = keras.saving.load_model(os.path.join(output, "model.keras"))
    # Whatever precision trained it, the saved model computes in float32.
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    # The saved model takes raw pixels (its normalisation is its first layer) and scores what metrics.json says.
    correct = total = 0
    for images, labels in data.load(digits, 32, 64).eval:
        correct += int(np.sum(np.argmax(model.predict(images, verbose=0), axis=1) == labels.numpy()))
        total += int(labels.shape[0])
    assert total == 359 and abs(correct / total - metrics["accuracy"]) < 1e-6
    # A second run into the same directory is refused.
    assert cli.main(run["argv"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_bfloat16_training_learns_as_well_as_float32(readme_runs, digits, tmp_path):
    """The README resnet18 run used `auto`; the same run in the other precision scores within 2 points."""
    first = readme_runs["resnet18"]
    first_policy = json.load(open(os.path.join(first["output"], "run.json")))["mixed_precision"]
    other = "off" if first_policy == "mixed_bfloat16" else "bfloat16"
    output = str(tmp_path / "other")
    argv = first["argv"][:first["argv"].index("--output")] + ["--output", output, "--mixed-precision", other]
    assert cli.main(argv + ["--verbose", "0"]) == 0
    accuracies = {policy: json.load(open(os.path.join(path, "metrics.json")))["accuracy"]
                  for policy, path in ((first_policy, first["output"]),
                                       (precision.MODES[other], output))}
    print(f"resnet18 on digits, test accuracy by precision: {accuracies}")
    assert set(accuracies) == {"float32", "mixed_bfloat16"}
    assert abs(accuracies["float32"] - accuracies["mixed_bfloat16"]) <= 0.02
    assert min(accuracies.values()) >= 0.90


PLAIN_KERAS = """
import sys

class NoKerasnets:  # this process must open the file with Keras alone
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "kerasnets":
            raise ImportError("kerasnets must not be imported here")

sys.meta_path.insert(0, NoKerasnets())
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
print(type(model).__name__, [m for m in sys.modules if m.startswith("kerasnets")])
"""


@pytest.mark.parametrize("run", ["nin", "resnet18"])  # "tf" and "torch" preprocessing
def test_trained_model_opens_with_plain_keras(run, readme_runs, digits, tmp_path):
    path = os.path.join(readme_runs[run]["output"], "model.keras")
    images = np.concatenate([x.numpy() for x, _ in data.load(digits, 32, 64).eval])[:100]
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run([sys.executable, "-c", PLAIN_KERAS, path, str(tmp_path / "images.npy"),
                             str(tmp_path / "plain.npy")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "Functional []", result.stdout
    model = kerasnets.load_model(path)  # through kerasnets: the fast predict is back
    assert isinstance(model, kerasnets.KerasnetsModel)
    plain = np.load(tmp_path / "plain.npy")
    assert plain.shape == (100, 10)
    np.testing.assert_allclose(plain, model.predict(images, verbose=0), atol=1e-6)
    # A legacy HDF5 whole-model file of it loads too.
    model.save(tmp_path / "model.h5")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "model.h5").predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-6)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_preprocessing_layer_is_keras_applications_preprocess_input(mode):
    from kerasnets import layers

    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    layer = layers.preprocessing(mode)
    assert type(layer).__module__.startswith("keras.")  # a built-in layer
    expected = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode=mode)
    np.testing.assert_allclose(layer(pixels).numpy(), expected, atol=2e-5)
    assert not layer.trainable_weights


def test_bfloat16_inference_agrees_with_float32(readme_runs, digits, capsys):
    path = os.path.join(readme_runs["resnet18"]["output"], "model.keras")
    model = keras.saving.load_model(path)
    fast = kerasnets.with_precision(model, "bfloat16")
    assert fast.get_layer("block1.unit_1.basic.conv1").dtype_policy.name == "mixed_bfloat16"
    assert fast.get_layer("Predictions").dtype_policy.name == "float32"
    for original, copy in zip(model.weights, fast.weights):
        np.testing.assert_array_equal(original.numpy(), copy.numpy())
    images = np.concatenate([x.numpy() for x, _ in data.load(digits, 32, 64).eval])
    full, half = model.predict(images, verbose=0), fast.predict(images, verbose=0)
    assert half.dtype == np.float32
    agreement = float(np.mean(full.argmax(1) == half.argmax(1)))
    # bfloat16 keeps 8 significant bits: classes float32 scores within one 8-bit step are a tie either may break.
    chosen = full[np.arange(len(full)), half.argmax(1)]
    within_ties = float(np.mean(chosen >= full.max(1) - export.TIE))
    print(f"bfloat16 vs float32 top-1 agreement on the digits test split: {agreement:.4f} "
          f"({within_ties:.4f} counting near-ties)")
    assert within_ties >= 0.995 and agreement >= 0.99
    # The command line does the same for a trained model and an image.
    image = os.path.join(digits, "test", "3", sorted(os.listdir(os.path.join(digits, "test", "3")))[0])
    assert cli.main(["predict", path, image, "--top-k", "1", "--precision", "bfloat16"]) == 0
    assert cli.main(["predict", path, image, "--top-k", "1"]) == 0
    bf16_line, f32_line = capsys.readouterr().out.strip().splitlines()[-2:]
    assert bf16_line.split()[1] == f32_line.split()[1]  # same label
    with pytest.raises(ValueError, match="--precision 'bfloat16' applies to .keras models"):
        export.predict(digits, [image], precision="bfloat16")  # an exported artifact runs as it was exported


def test_fine_tuning_on_new_classes_learns_with_the_defaults(tmp_path):
    """A model trained on digits 0-4, fine-tuned on digits 5-9 from its model.keras with the defaults."""
    low = write_digits_folder(str(tmp_path / "low"), digits_kept=range(5))
    high = write_digits_folder(str(tmp_path / "high"), digits_kept=range(5, 10))
    first = str(tmp_path / "first")
    assert cli.main(["train", "resnet18", "--data", low, "--image-size", "32", "--epochs", "8", "--output", first,
                     "--verbose", "0"]) == 0
    tuned = str(tmp_path / "tuned")
    assert cli.main(["train", "resnet18", "--data", high, "--image-size", "32", "--epochs", "3", "--weights",
                     os.path.join(first, "model.keras"), "--output", tuned, "--verbose", "0"]) == 0
    metrics = json.load(open(os.path.join(tuned, "metrics.json")))
    print(f"digits 0-4 -> 5-9 after 3 epochs of fine-tuning: test accuracy {metrics['accuracy']:.4f}")
    assert metrics["accuracy"] >= 0.90 and metrics["warnings"] == []
    assert json.load(open(os.path.join(tuned, "run.json")))["recipe"]["name"] == "fine-tune"


def test_a_run_that_cannot_learn_says_so(tmp_path, capsys):
    shuffled = write_digits_folder(str(tmp_path / "shuffled"), shuffle_labels=True)
    output = str(tmp_path / "run")
    assert cli.main(["train", "nin", "--data", shuffled, "--image-size", "16", "--epochs", "2", "--output", output,
                     "--verbose", "0"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning: not learning" in line]
    assert len(warnings) == 1 and "ln of the 10 classes" in warnings[0]
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert len(metrics["warnings"]) == 1 and metrics["warnings"][0] in warnings[0]


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


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_bare_backbone_files_fill_a_model_with_a_weighted_normalisation(suffix, tmp_path):
    """ResNet-50 v1 normalises as caffe did (channel flip: a frozen 1x1 convolution before the network)."""
    path = str(tmp_path / f"bare{suffix}")
    bare = kerasnets.resnet50(include_top=False, pooling="avg", input_shape=(32, 32, 3))
    bare.save_weights(path) if suffix == ".weights.h5" else bare.save(path)
    model = training.build_model("resnet50", 3, 32, weights=path)
    assert model.get_layer("image.Preprocess").weights  # the flip and mean, kept as built
    for layer in (layer for layer in bare.layers if layer.weights):
        for mine, theirs in zip(model.get_layer(layer.name).weights, layer.weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    model.trainable = True  # what a fine-tuning script does: the normalisation stays frozen once trained
    training.freeze(model)
    assert not model.get_layer("image.Preprocess").trainable


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


def _run(args, env=None, **kwargs):
    env = env or os.environ
    env = {**env, "PYTHONPATH": TESTS + os.pathsep + env.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def test_resume_after_sigkill(digits, tmp_path):
    output = str(tmp_path / "run")
    args = ["-m", "kerasnets", "train", "nin", "--data", digits, "--epochs", "3", "--image-size", "8",
            "--batch-size", "64", "--output", output, "--verbose", "0"]
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

    # Resumed with another image size: refused, naming it, and run.json is left as it was.
    run_json = open(os.path.join(output, "run.json")).read()
    refused = _run(args[:args.index("--image-size")] + ["--image-size", "16"] + args[args.index("--image-size") + 2:]
                   + ["--resume"])
    out = refused.communicate(timeout=600)[0]
    assert refused.returncode == 2 and "image_size 8 -> 16" in out, out[-2000:]
    assert open(os.path.join(output, "run.json")).read() == run_json

    # Resumed with a learning rate that diverges: stopped at once, one line, the last good backup kept.
    diverged = _run(args + ["--resume", "--lr", "1e30"])
    out = diverged.communicate(timeout=600)[0]
    assert diverged.returncode == 2, out[-2000:]
    error = [line for line in out.splitlines() if line.startswith("kerasnets: error:")]
    assert len(error) == 1 and "training diverged: the" in error[0] and "is kept in" in error[0], out[-2000:]
    assert os.path.exists(backup) and not os.path.exists(os.path.join(output, "model.keras"))
    assert training.read_history(os.path.join(output, "history.csv")) == rows_before

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


def test_two_local_workers_end_with_one_model_and_exact_metrics(digits, tmp_path):
    """Two worker processes on loopback (TF_CONFIG): the issue's resnet18 run on the digits.

    Both workers save the same model, batch-norm statistics included (each would
    otherwise keep those of its own shard), and metrics.json is a single-process
    `model.evaluate` of the chief's model.keras: every test image counted once.
    """
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    output = str(tmp_path / "run")
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(_run(["-m", "kerasnets", "train", "resnet18", "--data", digits, "--image-size", "32",
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
    for name in ("accuracy", "top5_accuracy", "loss"):
        assert metrics[name] == pytest.approx(expected[name], abs=1e-5), name

    # Trained as well as one process with the same global batch, epochs and seed.
    training.train("resnet18", digits, image_size=32, epochs=2, batch_size=32, distribute="off",
                   output=str(tmp_path / "single"), verbose=0)
    single = json.load(open(tmp_path / "single" / "metrics.json"))["accuracy"]
    print(f"resnet18 on digits, 2 epochs, batch 32: test accuracy {metrics['accuracy']:.4f} on two workers, "
          f"{single:.4f} in one process")
    assert abs(metrics["accuracy"] - single) <= 0.05


def test_two_workers_resume_after_one_dies(digits, tmp_path):
    """A worker killed mid-run: the chief waits in an all-reduce, is stopped, and both resume from the backup."""
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    output = str(tmp_path / "run")
    args = ["-m", "kerasnets", "train", "nin", "--data", digits, "--image-size", "8", "--epochs", "4",
            "--batch-size", "32", "--distribute", "multi-worker", "--output", output, "--verbose", "0"]

    def start(extra=()):
        return [_run(args + list(extra), env={**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}) for index in range(2)]

    first = start()
    backup = os.path.join(output, "backup", "training_metadata.json")
    deadline = time.time() + 300
    while not os.path.exists(backup) and all(p.poll() is None for p in first) and time.time() < deadline:
        time.sleep(0.1)
    assert os.path.exists(backup), first[0].communicate()[0][-2000:]
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


@pytest.mark.parametrize("gpus, flags, expected", [
    ([(8, 0)], set(), "mixed_float16"),  # A100
    ([(7, 0), (9, 0)], set(), "mixed_float16"),
    ([(6, 1)], {"avx512_bf16"}, "float32"),  # a Pascal GPU: no tensor cores; the GPU decides, not the CPU
    ([], {"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
    ([], {"amx_bf16"}, "mixed_bfloat16"),
    ([], {"avx2", "avx512f"}, "float32"),
    ([], set(), "float32"),
])
def test_auto_precision_follows_the_hardware(gpus, flags, expected):
    assert precision.resolve("auto", gpus=gpus, flags=flags) == expected
    assert precision.resolve("bfloat16", gpus=gpus, flags=flags) == "mixed_bfloat16"  # explicit wins


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(str(tmp_path / "absent")) == frozenset()
    with pytest.raises(ValueError, match="mixed_precision must be one of .*'auto'.*got mixed_precision='fp8'"):
        precision.resolve("fp8")


def test_recipes_resolve_by_situation_and_take_overrides():
    assert recipes.resolve(epochs=8).name == "scratch"
    assert recipes.resolve(epochs=8, fine_tuning=True).name == "fine-tune"
    assert recipes.resolve(epochs=8, fine_tuning=True, frozen_backbone=True).name == "train-head"
    slim = recipes.resolve("slim-imagenet", epochs=8)
    assert (slim.optimizer, slim.learning_rate, slim.min_crop_area, slim.flip) == ("rmsprop", 0.01, 0.08, True)
    assert recipes.resolve(epochs=5).warmup_epochs == 0.5  # capped at a tenth of the run
    custom = recipes.resolve(epochs=8, optimizer="sgd", lr=0.1, min_crop_area=1.0, flip=True)
    assert (custom.name, custom.optimizer, custom.learning_rate, custom.min_crop_area, custom.flip) == (
        "scratch", "sgd", 0.1, 1.0, True)
    schedule = recipes.learning_rate_schedule(recipes.resolve(epochs=10), steps_per_epoch=10, epochs=10)
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 99)]
    assert rates[0] == 0.0 and rates[1] == pytest.approx(1e-3) and rates[2] == pytest.approx(2e-3)
    assert rates[3] == pytest.approx(1e-3, rel=0.02) and rates[4] < 1e-5  # cosine: half-way is half the peak


@pytest.mark.parametrize("option, value, message", [
    ("--lr", "-1", "lr must be a finite number > 0, got lr=-1.0"),
    ("--lr", "inf", "lr must be a finite number > 0, got lr=inf"),
    ("--min-crop-area", "0", "min_crop_area must be in (0, 1], got min_crop_area=0.0"),
    ("--weight-decay", "-0.1", "weight_decay must be >= 0"),
    ("--label-smoothing", "1", "label_smoothing must be in [0, 1)"),
    ("--recipe", "fast", "invalid choice: 'fast'"),
    ("--mixed-precision", "fp8", "invalid choice: 'fp8'"),
])
def test_bad_recipe_options_are_refused_before_anything_is_written(option, value, message, digits, tmp_path,
                                                                     capsys):
    output = tmp_path / "out"
    try:
        code = cli.main(["train", "nin", "--data", digits, "--output", str(output), option, value])
    except SystemExit as usage_error:  # argparse refuses a bad choice itself
        code = usage_error.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err
    assert not output.exists()


def test_nin_starts_with_live_class_maps():
    """NIN's initialisation (see kerasnets/nin.py): He-normal kernels; class maps small, with a bias of 1."""
    model = kerasnets.nin(classes=10)
    class_maps = model.get_layer("mlpconv3.cccp6")
    assert np.all(class_maps.bias.numpy() == 1.0) and float(np.std(class_maps.kernel.numpy())) < 0.02
    conv = model.get_layer("mlpconv2.conv").kernel.numpy()
    fan_in = np.prod(conv.shape[:3])
    assert float(np.std(conv)) == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.1)
    images = np.random.default_rng(0).uniform(0, 1, (8, 32, 32, 3)).astype("float32")
    maps = keras.Model(model.inputs, model.get_layer("mlpconv3").output)(images)
    assert float(np.mean(maps.numpy() > 0)) > 0.9  # every class map starts active


def test_learning_check_stops_on_nan_loss_and_on_nan_weights_that_the_loss_hides(tmp_path):
    """A ReLU may map NaN to 0, so a network of NaN weights can report a finite loss of ln(classes)."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="scores")], name="probe")
    check = training.LearningCheck(3, check_epoch=1, backup_dir=str(tmp_path / "backup"))
    check.set_model(model)
    check.on_epoch_begin(0)
    check.on_train_batch_end(0, {"loss": 1.0})
    check.on_epoch_end(0, {"loss": 1.0})  # finite loss, finite weights: nothing to say
    with pytest.raises(training.TrainingDiverged, match="loss became nan at epoch 1, step 2; no epoch had"):
        check.on_train_batch_end(1, {"loss": float("nan")})
    kernel = model.get_layer("scores").kernel
    kernel.assign(np.where(np.eye(4, 3) > 0, np.inf, 0.0).astype("float32"))
    (tmp_path / "backup").mkdir()
    with pytest.raises(training.TrainingDiverged,
                       match=r"weights became infinite in epoch 2 \(probe/scores/kernel\) while the training loss read "
                             r"1.099; the last good state .* is kept in"):
        check.on_epoch_end(1, {"loss": math.log(3)})


@pytest.mark.parametrize("extra, message", [
    (["--model-arg", "batch_norm=maybe"], "batch_norm must be True or False"),
    (["--weights", "TEXT"], "is not a readable HDF5 weights file"),
    (["--fine-tune-from", "Mixed_6e"], "is not an endpoint of NIN"),
    (["--lr", "1e30"], "training diverged: the "),  # diverges in the first epoch
])
def test_a_run_that_fails_before_its_first_epoch_leaves_nothing(extra, message, digits, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    output = tmp_path / "out"
    argv = ["train", "nin", "--data", digits, "--image-size", "8", "--epochs", "1", "--output", str(output),
            "--verbose", "0"] + [str(text) if a == "TEXT" else a for a in extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not output.exists()  # the corrected command can use the same --output
