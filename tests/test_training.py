"""Training: pipelines, recipes, mixed precision, transfer learning, resume, errors."""

import json
import math
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnets
from kerasnets import cli, data, precision, recipes, training
from children import run_python, wait_for_backup
from image_folders import write_digits_folder


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
    check = run_python(["-c", "import tensorflow_datasets as tfds; print(len(tfds.builder('imagenette').url_infos))"],
                 env={**os.environ, **env})
    out = check.communicate(timeout=300)[0]
    assert check.returncode == 0 and int(out.split()[-1]) > 0, out[-2000:]  # its download URLs
    process = run_python(["-m", "kerasnets", "train", "nin", "--data", "tfds:mnist", "--image-size", "8", "--epochs", "1",
                    "--output", output, "--verbose", "0"], env={**os.environ, **env})
    out = process.communicate(timeout=600)[0]
    assert process.returncode == 0, out[-2000:]
    assert "data found: 1438 training images in 10 classes, 359 for evaluation (test)" in out
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert metrics["eval_images"] == 359 and metrics["eval_split"] == "test"
    assert open(os.path.join(output, "labels.txt")).read().split() == [str(i) for i in range(10)]


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_preprocessing_layer_is_keras_applications_preprocess_input(mode):
    from kerasnets import layers

    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    layer = layers.preprocessing(mode)
    assert type(layer).__module__.startswith("keras.")  # a built-in layer
    expected = keras.applications.imagenet_utils.preprocess_input(pixels.copy(), mode=mode)
    np.testing.assert_allclose(layer(pixels).numpy(), expected, atol=2e-5)
    assert not layer.trainable_weights


def test_fine_tuning_on_new_classes_learns_with_the_defaults(tmp_path):
    """A model trained on digits 0-4, fine-tuned on digits 5-9 from its model.keras with the defaults; the first run
    also in the other precision (float32 / bfloat16), from scratch: it learns as well, within 2 points."""
    low = write_digits_folder(str(tmp_path / "low"), digits_kept=range(5))
    high = write_digits_folder(str(tmp_path / "high"), digits_kept=range(5, 10))
    first = str(tmp_path / "first")
    argv = ["train", "resnet18", "--data", low, "--image-size", "32", "--epochs", "8", "--verbose", "0"]
    assert cli.main(argv + ["--output", first]) == 0
    policy = json.load(open(os.path.join(first, "run.json")))["mixed_precision"]
    assert policy == precision.resolve("auto")
    tuned = str(tmp_path / "tuned")
    assert cli.main(["train", "resnet18", "--data", high, "--image-size", "32", "--epochs", "3", "--weights",
                     os.path.join(first, "model.keras"), "--output", tuned, "--verbose", "0"]) == 0
    metrics = json.load(open(os.path.join(tuned, "metrics.json")))
    print(f"digits 0-4 -> 5-9 after 3 epochs of fine-tuning: test accuracy {metrics['accuracy']:.4f}")
    assert metrics["accuracy"] >= 0.90 and metrics["warnings"] == []
    assert json.load(open(os.path.join(tuned, "run.json")))["recipe"]["name"] == "fine-tune"
    # (Digits 0-4, half the data set: a from-scratch run in bfloat16 is ~8x slower where the CPU emulates it.)
    other = "off" if policy == "mixed_bfloat16" else "bfloat16"
    assert cli.main(argv + ["--output", str(tmp_path / other), "--mixed-precision", other]) == 0
    accuracies = {name: json.load(open(os.path.join(path, "metrics.json")))["accuracy"]
                  for name, path in ((policy, first), (precision.MODES[other], str(tmp_path / other)))}
    print(f"resnet18 on digits 0-4 from scratch, test accuracy by precision: {accuracies}")
    assert set(accuracies) == {"float32", "mixed_bfloat16"}
    assert abs(accuracies["float32"] - accuracies["mixed_bfloat16"]) <= 0.02
    assert min(accuracies.values()) >= 0.90


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
    # trying the file on the network behind the normalisation leaves the graph as built (a layer that looked
    # called twice would stop bfloat16's batch-norm folding later)
    assert all(len(layer._inbound_nodes) == 1 for layer in model.layers[1:]), model.name
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


def test_resume_after_sigkill(digits, tmp_path):
    output = str(tmp_path / "run")
    args = ["-m", "kerasnets", "train", "nin", "--data", digits, "--epochs", "3", "--image-size", "8",
            "--batch-size", "64", "--output", output, "--verbose", "0"]
    process = run_python(args)
    wait_for_backup([process], output)
    backup = os.path.join(output, "backup", "training_metadata.json")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(output, "model.keras"))
    rows_before = training.read_history(os.path.join(output, "history.csv"))
    assert len(rows_before) >= 1

    # Resumed with another image size: refused, naming it, and run.json is left as it was.
    run_json = open(os.path.join(output, "run.json")).read()
    refused = run_python(args[:args.index("--image-size")] + ["--image-size", "16"] + args[args.index("--image-size") + 2:]
                   + ["--resume"])
    out = refused.communicate(timeout=600)[0]
    assert refused.returncode == 2 and "image_size 8 -> 16" in out, out[-2000:]
    assert open(os.path.join(output, "run.json")).read() == run_json

    # Resumed with a learning rate that diverges: stopped at once, one line, the last good backup kept.
    diverged = run_python(args + ["--resume", "--lr", "1e30"])
    out = diverged.communicate(timeout=600)[0]
    assert diverged.returncode == 2, out[-2000:]
    error = [line for line in out.splitlines() if line.startswith("kerasnets: error:")]
    assert len(error) == 1 and "training diverged: the" in error[0] and "is kept in" in error[0], out[-2000:]
    assert os.path.exists(backup) and not os.path.exists(os.path.join(output, "model.keras"))
    assert training.read_history(os.path.join(output, "history.csv")) == rows_before

    resumed = run_python(args + ["--resume"])
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out[-2000:]
    epochs_run = [line for line in out.splitlines() if "] epoch " in line]
    assert len(epochs_run) == 3 - len(rows_before)
    rows = training.read_history(os.path.join(output, "history.csv"))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert rows[0] == rows_before[0]  # nothing written before is lost
    assert json.load(open(os.path.join(output, "metrics.json")))["epochs"] == 3
    assert not os.path.exists(os.path.join(output, "backup"))


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


def _with_batch_norm_statistics(model, seed=0):
    """`model` with random batch-norm statistics and parameters, so that folding them in changes the kernels."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("name, kwargs", [
    ("resnet18", {}),  # Conv2D
    ("mobilenet_v1_025", {"depth_multiplier": 2}),  # DepthwiseConv2D with two outputs per input channel
    ("inception_v2", {"depth_multiplier": 0.25}),  # Conv2D and the stem's SeparableConv2D (multiplier 8) + ReLU
    ("shufflenet_v2_x0_5", {}),  # grouped branches, channel shuffle
])
def test_batch_norms_fold_into_their_convolutions_with_the_same_outputs(name, kwargs):
    model = _with_batch_norm_statistics(kerasnets.create_model(name, input_shape=(64, 64, 3), **kwargs))
    folded = precision.with_precision(model, "off", fold_batch_norms=True)
    norms = [layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and [layer.name for layer in folded.layers] == [layer.name for layer in model.layers]
    assert all(type(folded.get_layer(name)).__name__ == "Identity" for name in norms)
    images = np.random.default_rng(1).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(folded.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-6)
    unfolded = precision.with_precision(model, "off")  # float32: nothing folded by default, the same weights
    for original, copy in zip(model.weights, unfolded.weights):
        np.testing.assert_array_equal(original.numpy(), copy.numpy())
    assert precision.with_precision(model, "bfloat16").get_layer(norms[0]).__class__.__name__ == "Identity"


def test_a_batch_norm_is_folded_only_where_it_alone_reads_a_linear_convolution():
    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")(inputs)
    activated = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="activated")(inputs)
    read_by_an_op = keras.layers.Conv2D(4, 3, padding="same", name="read_by_an_op")(inputs)
    plain = keras.layers.Conv2D(4, 3, padding="same", name="plain")(inputs)
    separable = keras.layers.SeparableConv2D(5, 3, padding="same", depth_multiplier=3, name="separable")(inputs)
    outputs = keras.layers.Concatenate()([
        keras.layers.Add()([shared, keras.layers.BatchNormalization(name="shared_norm")(shared)]),
        keras.layers.BatchNormalization(name="activated_norm")(activated),
        keras.ops.relu(read_by_an_op), keras.layers.BatchNormalization(name="read_by_an_op_norm")(read_by_an_op),
        keras.layers.BatchNormalization(name="plain_norm")(plain),
        keras.layers.BatchNormalization(center=False, name="separable_norm")(separable)])
    model = _with_batch_norm_statistics(keras.Model(inputs, outputs))
    assert precision.foldable_batch_norms(model) == {"plain_norm": "plain", "separable_norm": "separable"}
    # nor where the model also returns the convolution's output; a batch norm the model returns stays float32
    returned = keras.Model(inputs, [plain, model.get_layer("plain_norm").output])
    assert precision.foldable_batch_norms(returned) == {}
    last = precision.with_precision(keras.Model(inputs, model.get_layer("plain_norm").output), "bfloat16")
    assert type(last.get_layer("plain_norm")).__name__ == "Identity" and last.output.dtype == "float32"
    images = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    folded = precision.with_precision(model, "off", fold_batch_norms=True)
    np.testing.assert_allclose(folded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5,
                               atol=1e-5)


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


ONEDNN = """
import sys
if sys.argv[1] == "tensorflow first":
    import tensorflow
import kerasnets
from kerasnets import precision
print(precision.onednn_enabled(), precision.onednn_hint())
"""


def test_kerasnets_picks_onednn_kernels_unless_told_otherwise():
    """Imported before TensorFlow, kerasnets turns oneDNN on; a user's TF_ENABLE_ONEDNN_OPTS=0 is kept; imported
    after a TensorFlow that has it off, it says how to get it (see benchmarks/onednn.py for why)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}

    def answer(order, **extra):
        child = run_python(["-c", ONEDNN, order], env={**env, **extra})
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0, out[-3000:]
        return out.strip().splitlines()[-1]

    assert answer("kerasnets first") == "True None"
    assert answer("kerasnets first", TF_ENABLE_ONEDNN_OPTS="0") == "False None"
    late = answer("tensorflow first")
    if late.startswith("False"):  # TensorFlow turns oneDNN on by itself on some CPUs (AVX-512 VNNI/BF16, AMX)
        assert "import kerasnets first, or set TF_ENABLE_ONEDNN_OPTS=1" in late
