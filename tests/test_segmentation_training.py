"""Segmentation data and training: the ROOT/{train,test}/{images,masks} layout, augmentation that keeps image and
mask aligned, IoU as Keras computes it, and `kerasnets train unet` learning digits-on-photos with the defaults."""

import json
import os
import shlex
import signal
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnets
from kerasnets import cli, data, export, tflite_metadata, training
from children import run_python, wait_for_backup
from image_folders import (digits_on_photos, prepare_digits_on_photos_as_tfds_pets, write_digits_on_photos,
                           write_segmentation_folder)
from segmentation_reference import pixel_scores
import without_kerasnets

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


@pytest.fixture(scope="module")
def strokes(tmp_path_factory):
    """Digits on photos, two classes (stroke vs photo), 64x64."""
    return write_digits_on_photos(str(tmp_path_factory.mktemp("strokes")), classes=2, train=400, test=100)


def test_digits_on_photos_label_the_strokes_they_paste():
    images, masks = digits_on_photos(6, size=64, classes=11, seed=3)
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.uint8 and masks.shape == (6, 64, 64)
    assert set(np.unique(masks)) - {0} and set(np.unique(masks)) <= set(range(11))
    assert 0.02 < np.mean(masks > 0) < 0.5  # strokes are a minority, as objects in photos are
    # Train and test draw different scans: the same seed gives different images.
    test_images, _ = digits_on_photos(6, size=64, classes=11, seed=3, split="test")
    assert not np.array_equal(images, test_images)


def test_augmentation_moves_image_and_mask_together(tmp_path):
    """Masks that are the image's own thresholded content stay that after random crops and flips."""
    rng = np.random.default_rng(0)
    images = np.zeros((8, 48, 40, 3), "uint8")
    for image in images:  # a few bright rectangles, placed off-centre so a flip or shift shows
        for _ in range(3):
            y, x, h, w = rng.integers(0, 30), rng.integers(0, 24), rng.integers(6, 18), rng.integers(6, 16)
            image[y:y + h, x:x + w] = 255
    masks = (images[..., 0] > 127).astype("uint8")
    for split in ("train", "test"):
        write_segmentation_folder(str(tmp_path), images, masks, split)
    found = data.load_segmentation(str(tmp_path), 32, 8, data.Augmentation(min_area=0.2, flip=True), seed=1)
    assert found.class_names == ["0", "1"] and found.train_count == found.eval_count == 8
    flips_seen = 0
    for _ in range(3):  # epochs: new crops and flips each time
        for batch_images, batch_masks in found.train:
            thresholded = (batch_images.numpy()[..., 0] > 127).astype("uint8")
            assert batch_masks.dtype == tf.uint8 and batch_masks.shape == thresholded.shape
            # Bilinear image and nearest mask can disagree on the edge pixels only.
            assert np.mean(thresholded == batch_masks.numpy()) > 0.97
            mirrored = thresholded[:, :, ::-1] == batch_masks.numpy()
            flips_seen += int(np.mean(mirrored) < 0.9)
    assert flips_seen  # mirroring the image alone would have broken the pairing
    for batch_images, batch_masks in found.eval:
        assert np.mean((batch_images.numpy()[..., 0] > 127) == batch_masks.numpy()) > 0.97


def test_segmentation_folders_that_do_not_pair_are_named(tmp_path):
    images, masks = digits_on_photos(3, size=32)
    for split in ("train", "test"):
        write_segmentation_folder(str(tmp_path), images, masks, split)
    os.remove(tmp_path / "train" / "masks" / "train_0001.png")
    with pytest.raises(ValueError, match=r"train_0001 \(no mask\)"):
        data.load_segmentation(str(tmp_path), 32, 2)
    with pytest.raises(ValueError, match=r"needs train/ and test/ \(or val/\) folders, each with images/ and masks/; "
                                         r"found \['images', 'masks'\]"):
        data.load_segmentation(str(tmp_path / "train"), 32, 2)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        data.load_segmentation(str(tmp_path / "nowhere"), 32, 2)
    write_segmentation_folder(str(tmp_path), images, masks[:, :16], "train")  # masks of another size
    with pytest.raises(ValueError, match="none of the 3 image/mask pairs in train/ decode with the image and its mask "
                                         "of one size"):
        data.load_segmentation(str(tmp_path), 32, 2)
    write_segmentation_folder(str(tmp_path), images, masks, "train")
    (tmp_path / "labels.txt").write_text("photo\n")
    with pytest.raises(ValueError, match="the masks hold class 1, but labels.txt names 1 classes"):
        data.load_segmentation(str(tmp_path), 32, 2)
    (tmp_path / "labels.txt").write_text("photo\nstroke\n")
    assert data.load_segmentation(str(tmp_path), 32, 2).class_names == ["photo", "stroke"]


def test_tfds_oxford_iiit_pet_trains_with_its_trimaps_as_classes(tmp_path, monkeypatch):
    """`--data tfds:oxford_iiit_pet` reads tfds' records (written offline by tfds' own builder, in the set's
    real layout) with the trimaps as classes pet, background, border; tfds' voc, which has boxes and no masks,
    is refused by name."""
    data_dir, trimaps = prepare_digits_on_photos_as_tfds_pets(tmp_path / "tensorflow_datasets")
    import tensorflow_datasets as tfds

    # tfds reads TFDS_DATA_DIR once, at import: this process gets the directory a user's would get from it.
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", data_dir)
    found = data.load_segmentation("tfds:oxford_iiit_pet", 64, 8)
    assert found.class_names == ["pet", "background", "border"] and (found.train_count, found.eval_count) == (40, 16)
    masks = np.concatenate([m.numpy() for _, m in found.eval])  # 64x64 kept as it is: the trimaps, less one
    assert sorted(m.tobytes() for m in masks) == sorted((t - 1).tobytes() for t in trimaps["test"])
    run = training.train("unet", "tfds:oxford_iiit_pet", backbone="mobilenet_v1_025", image_size=64, epochs=1,
                         batch_size=8, output=str(tmp_path / "run"), verbose=0)
    metrics = json.load(open(os.path.join(str(tmp_path / "run"), "metrics.json")))
    assert len(metrics["iou_per_class"]) == 3 and 0 <= metrics["mean_iou"] <= 1, run
    with pytest.raises(ValueError, match=r"tensorflow-datasets' voc holds boxes, not masks"):
        data.load_segmentation("tfds:voc/2012", 64, 8)


def test_palette_masks_are_read_as_their_indices(tmp_path):
    """PASCAL VOC's SegmentationClass PNGs are palette images: their pixels are class indices (255: the ignored
    border), which TensorFlow's PNG decoder would turn into the palette's colours."""
    from PIL import Image

    images, masks = digits_on_photos(4, size=32, classes=11, seed=5)
    masks[:, :2] = 255  # an ignored band, as VOC's object borders
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] * 85 + [224, 224, 192]  # 256 colours; VOC's are of this kind
    for split in ("train", "test"):
        write_segmentation_folder(str(tmp_path), images, masks, split)
        for n, mask in enumerate(masks):
            indexed = Image.fromarray(mask, mode="P")
            indexed.putpalette(palette)
            indexed.save(tmp_path / split / "masks" / f"{split}_{n:04d}.png")
    assert Image.open(tmp_path / "test" / "masks" / "test_0000.png").mode == "P"
    found = data.load_segmentation(str(tmp_path), 32, 4)
    assert found.class_names == [str(i) for i in range(int(masks[masks != 255].max()) + 1)]
    got = np.concatenate([m.numpy() for _, m in found.eval])
    np.testing.assert_array_equal(got, masks)


def test_iou_per_class_is_keras_iou_with_ignored_pixels_left_out():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (6, 16, 16)).astype("uint8")
    truth[:, :3] = data.IGNORE_LABEL
    truth[truth == 3] = 2  # class 3 never occurs: no IoU for it unless predicted
    logits = rng.normal(size=(6, 16, 16, 4)).astype("float32")
    logits[..., 3] -= 10  # and never predicted
    model = keras.Sequential([keras.Input((16, 16, 4)), keras.layers.Identity()])
    scores = training.segmentation_scores(training.confusion_matrix(
        model, tf.data.Dataset.from_tensor_slices((logits, truth)).batch(4), 4))
    keep = truth != data.IGNORE_LABEL
    for c in range(3):
        reference = keras.metrics.IoU(4, [c], sparse_y_pred=False, ignore_class=data.IGNORE_LABEL)
        reference.update_state(truth, logits)
        assert scores["iou_per_class"][c] == pytest.approx(float(reference.result()), abs=1e-6)
    assert scores["iou_per_class"][3] is None
    reference = keras.metrics.MeanIoU(4, sparse_y_pred=False, ignore_class=data.IGNORE_LABEL)
    reference.update_state(truth, logits)
    assert scores["mean_iou"] == pytest.approx(float(reference.result()), abs=1e-6)
    assert scores["pixel_accuracy"] == pytest.approx(np.mean(logits.argmax(-1)[keep] == truth[keep]))


def test_a_frozen_backbone_leaves_the_whole_head_to_train():
    model = training.build_segmentation_model("unet", "resnet18", 3, 64, freeze_backbone=True)
    frozen = {layer.name for layer in model.layers if layer.weights and not layer.trainable}
    trained = {layer.name for layer in model.layers if layer.weights and layer.trainable}
    assert "conv1.Conv2D" in frozen and "block4.unit_2.basic.conv2" in frozen
    assert {"decoder.stage1.conv1", "decoder.stage5.conv2.BatchNorm", "Logits", "score_8", "upscore"} <= trained
    assert all(name.startswith(("decoder.", "Logits", "score_8", "upscore")) for name in trained)


def test_segmentation_arguments_are_checked_before_any_work(strokes, tmp_path, capsys):
    output = str(tmp_path / "run")
    assert cli.main(["train", "unet", "--data", strokes, "--image-size", "70", "--output", output]) == 2
    assert "image_size=70: unet on resnet18 needs a multiple of 32; the nearest valid size is 64" in \
        capsys.readouterr().err
    assert cli.main(["train", "resnet18", "--backbone", "vgg16", "--data", strokes, "--output", output]) == 2
    assert "backbone='vgg16' applies to segmentation heads" in capsys.readouterr().err
    assert cli.main(["train", "unet", "--backbone", "resnet19", "--data", strokes, "--output", output]) == 2
    assert "resnet19" in capsys.readouterr().err
    assert not os.path.exists(output)


def readme_segmentation_commands():
    """The `kerasnets` lines of README's Segmentation section (train, export, predict), comments dropped."""
    text = open(README, encoding="utf8").read()
    section = text[text.index("### Segmentation"):text.index("## Training")]
    lines = [line.split("#")[0].strip() for line in section.splitlines() if line.startswith("kerasnets ")]
    assert [line.split()[1] for line in lines] == ["train", "export", "predict"], lines
    return lines


def readme_argv(command, **replacements):
    """A README command line as argv for cli.main, its placeholders (ROOT, runs/, ...) replaced."""
    for placeholder, value in replacements.items():
        command = command.replace(placeholder, value)
    argv = shlex.split(command)
    assert argv[0] == "kerasnets"
    return argv[1:]


@pytest.fixture(scope="module")
def unet_run(strokes, tmp_path_factory):
    """README's command as written, on the two-class digits-on-photos set; the run directory."""
    runs = tmp_path_factory.mktemp("runs")
    argv = readme_argv(readme_segmentation_commands()[0], ROOT=strokes, **{"runs/": f"{runs}/"})
    assert "--mixed-precision" not in argv and "--recipe" not in argv
    assert cli.main(argv + ["--verbose", "0"]) == 0
    return argv[argv.index("--output") + 1]


def test_readmes_unet_command_learns_strokes_on_photos_with_the_defaults(unet_run, tmp_path):
    """README's command as written (2 classes: stroke vs photo); mean IoU >= 0.7 on the test split."""
    output = unet_run
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    settings = json.load(open(os.path.join(output, "run.json")))
    print(f"unet/resnet18 on digits-on-photos, 2 classes: mean IoU {metrics['mean_iou']:.4f}, per class "
          f"{metrics['iou_per_class']}, pixel accuracy {metrics['pixel_accuracy']:.4f}")
    assert metrics["mean_iou"] >= 0.7 and metrics["warnings"] == []
    assert len(metrics["iou_per_class"]) == 2 and metrics["eval_images"] == 100
    assert metrics["mean_iou"] == pytest.approx(np.mean(metrics["iou_per_class"]))
    assert settings["backbone"] == "resnet18" and settings["recipe"]["label_smoothing"] == 0
    for picture in ("training_curves.png", "predictions.png"):
        assert open(os.path.join(output, picture), "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"
    # model.keras takes raw pixels, opens with plain Keras and scores every pixel.
    images, masks = digits_on_photos(8, size=64, classes=2, split="test")
    np.save(tmp_path / "images.npy", images.astype("float32"))
    result = without_kerasnets.run(PLAIN_KERAS, os.path.join(output, "model.keras"), tmp_path / "images.npy",
                                   tmp_path / "masks.npy")
    assert result.returncode == 0, result.stderr[-3000:]
    predicted = np.load(tmp_path / "masks.npy")
    assert predicted.shape == (8, 64, 64)
    assert np.mean(predicted == masks) > 0.9
    # Both score paths trained: the full-resolution scores, which start at zero, moved, and the sum beats the
    # upsampled 1/8 scores alone.
    model = keras.saving.load_model(os.path.join(output, "model.keras"))
    assert np.abs(model.get_layer("Logits").get_weights()[0]).max() > 0.01
    coarse = keras.Model(model.input, model.get_layer("upscore").output).predict(images, verbose=0).argmax(-1)
    full = model.predict(images, verbose=0).argmax(-1)
    assert np.mean(full == masks) > np.mean(coarse == masks)


PLAIN_KERAS = """
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0).argmax(-1))
"""


def test_int8_tflite_of_the_trained_unet_agrees_with_keras_pixel_by_pixel(unet_run, strokes, tmp_path,
                                                                         monkeypatch):
    """README's export command as written (into saved_models/ of the working directory)."""
    monkeypatch.chdir(tmp_path)
    argv = readme_argv(readme_segmentation_commands()[1], ROOT=strokes, **{"runs/unet": unet_run})
    assert cli.main(argv) == 0
    path = os.path.join("saved_models", "unet", "unet_int8.tflite")
    card = json.load(open(export.card_path(path)))
    assert card["task"] == "segmentation" and card["classes"] == 2 and card["labels"] == ["0", "1"]
    assert card["verification"]["litert"]["pixels"] == 100 * 64 * 64
    # As a phone app runs it: MediaPipe Tasks' ImageSegmenter, from the file's metadata alone, gives LiteRT's scores.
    assert card["verification"]["mediapipe"]["pixels"] == 100 * 64 * 64
    some = np.round(export.sample_images(keras.saving.load_model(os.path.join(unet_run, "model.keras")), strokes)[0][:4])
    with export.MediaPipeSegmenter(path) as segmenter:
        np.testing.assert_allclose(segmenter(some), export.TFLiteRunner(path)(some), atol=1e-6)
    # Independently: every test image through LiteRT and through Keras.
    images, _ = export.sample_images(keras.saving.load_model(os.path.join(unet_run, "model.keras")), strokes)
    keras_masks = keras.saving.load_model(os.path.join(unet_run, "model.keras")).predict(images, verbose=0).argmax(-1)
    runner = export.TFLiteRunner(path)
    assert runner.input["dtype"] == np.uint8
    lite_masks = runner(np.round(images)).argmax(-1)
    agreement = float(np.mean(lite_masks == keras_masks))
    print(f"unet/resnet18 int8 TFLite vs Keras on the test split: pixel agreement {agreement:.4f}, "
          f"{card['size_bytes'] / 1e6:.2f} MB")
    assert agreement >= 0.98
    metadata = tflite_metadata.read(open(path, "rb").read())
    assert metadata["labels"] == ["0", "1"]


def test_predict_writes_a_mask_and_an_overlay_per_image(unet_run, strokes, tmp_path, capsys, monkeypatch):
    """README's predict command as written, then more images and the refusals."""
    monkeypatch.chdir(tmp_path)
    model_path = os.path.join(unet_run, "model.keras")
    folder = os.path.join(strokes, "test", "images")
    files = [os.path.join(folder, name) for name in sorted(os.listdir(folder))[:2]]
    tf.io.write_file("photo.jpg", tf.io.encode_jpeg(tf.io.decode_image(tf.io.read_file(files[0]), channels=3)))
    assert cli.main(readme_argv(readme_segmentation_commands()[2], **{"runs/unet": unet_run})) == 0
    assert capsys.readouterr().out.startswith("photo.jpg: masks/photo_mask.png, masks/photo_overlay.png (0 ")
    assert os.path.exists("masks/photo_overlay.png")
    wide = str(tmp_path / "wide.png")  # not the model's size: the mask comes back at the image's own size
    tf.io.write_file(wide, tf.io.encode_png(tf.image.resize(tf.io.decode_image(tf.io.read_file(files[0]),
                                                                              channels=3), (64, 128)).numpy()
                                            .round().astype("uint8")))
    out = str(tmp_path / "more")
    assert cli.main(["predict", model_path, *files, wide, "--output", out]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("_mask.png" in line and "_overlay.png" in line for line in lines)
    model = keras.saving.load_model(model_path)
    for path in files:
        name = os.path.splitext(os.path.basename(path))[0]
        mask = tf.io.decode_png(tf.io.read_file(os.path.join(out, f"{name}_mask.png"))).numpy()[..., 0]
        image = tf.io.decode_image(tf.io.read_file(path), channels=3).numpy()
        # At the model's own size the mask is the model's argmax, pixel for pixel.
        np.testing.assert_array_equal(mask, model.predict(image[None].astype("float32"), verbose=0)[0].argmax(-1))
        overlay = tf.io.decode_png(tf.io.read_file(os.path.join(out, f"{name}_overlay.png"))).numpy()
        np.testing.assert_array_equal(overlay[mask == 0], image[mask == 0])  # the background is left clear
        assert overlay.shape == image.shape
    assert tf.io.decode_png(tf.io.read_file(os.path.join(out, "wide_mask.png"))).shape == (64, 128, 1)
    # Nothing is replaced without --overwrite; a classifier's file is refused with --output.
    assert cli.main(["predict", model_path, files[0], "--output", out]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["predict", model_path, files[0]]) == 2
    assert "is a segmenter" in capsys.readouterr().err
    # Two images of one name would write one mask; a classifier has no masks: both refused before any output.
    twin = tmp_path / "twin" / os.path.basename(files[0])
    twin.parent.mkdir()
    twin.write_bytes(open(files[0], "rb").read())
    assert cli.main(["predict", model_path, files[0], str(twin), "--output", str(tmp_path / "twins")]) == 2
    assert "two files share a name" in capsys.readouterr().err
    classifier = str(tmp_path / "nin.keras")
    kerasnets.nin(input_shape=(32, 32, 3)).save(classifier)
    assert cli.main(["predict", classifier, files[0], "--output", str(tmp_path / "classes")]) == 2
    assert "is a classifier, not a segmenter" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "twins") and not os.path.exists(tmp_path / "classes")


def test_the_overlay_palette_is_pascal_vocs():
    # PASCAL VOC's published colours: background, aeroplane, bicycle, bird, ..., person (15).
    colours = export.palette(21)
    assert colours[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert colours[15].tolist() == [192, 128, 128] and colours[20].tolist() == [0, 64, 128]


TWO_CPU_DEVICES = textwrap.dedent("""
    import sys, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from kerasnets import cli
    sys.exit(cli.main(sys.argv[1:]))
""")


def test_segmentation_trains_mirrored_in_bfloat16_and_resumes_after_sigkill(tmp_path):
    """As classification does: two replicas (MirroredStrategy on two CPU devices), bfloat16 compute, killed after
    its first epoch's backup and resumed there; metrics.json is Keras' MeanIoU of the saved model, every test pixel
    counted once, and its loss the mean over the test pixels (21 test images, which two replicas cannot split evenly:
    the validation in history.csv scores them on one device)."""
    root = write_digits_on_photos(str(tmp_path / "strokes"), classes=2, train=96, test=21, size=32)
    output = str(tmp_path / "run")
    argv = ["-c", TWO_CPU_DEVICES, "train", "unet", "--backbone", "resnet18", "--data", root, "--image-size", "32",
            "--epochs", "2", "--batch-size", "16", "--distribute", "mirrored", "--mixed-precision", "bfloat16",
            "--output", output, "--verbose", "0"]
    first = run_python(argv)
    wait_for_backup([first], output)
    first.send_signal(signal.SIGKILL)
    started = first.communicate()[0]
    assert "2 replica(s)" in started and "policy mixed_bfloat16" in started, started[-3000:]
    assert not os.path.exists(os.path.join(output, "model.keras"))
    rows_before = training.read_history(os.path.join(output, "history.csv"))
    assert len(rows_before) >= 1 and "val_mean_iou" in rows_before[0]

    resumed = run_python(argv + ["--resume"])
    out = resumed.communicate(timeout=900)[0]
    assert resumed.returncode == 0, out[-3000:]
    assert len([line for line in out.splitlines() if "] epoch " in line]) == 2 - len(rows_before)
    rows = training.read_history(os.path.join(output, "history.csv"))
    assert [int(r["epoch"]) for r in rows] == [0, 1] and rows[0] == rows_before[0]
    assert json.load(open(os.path.join(output, "run.json")))["mixed_precision"] == "mixed_bfloat16"

    model = keras.saving.load_model(os.path.join(output, "model.keras"))
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}  # saved to run anywhere
    metric = keras.metrics.MeanIoU(2, sparse_y_pred=False)
    for images, masks in data.load_segmentation(root, 32, 16).eval:
        metric.update_state(masks, model.predict(images, verbose=0))
    expected = pixel_scores(model, data.load_segmentation(root, 32, 16).eval, 2)
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    print(f"unet/resnet18, 2 replicas, bfloat16, resumed: mean IoU {metrics['mean_iou']:.4f} after 2 epochs; "
          f"metrics.json {metrics['loss']:.5f}, expected {expected}")
    assert metrics["epochs"] == 2 and metrics["eval_images"] == 21
    assert metrics["mean_iou"] == pytest.approx(float(metric.result()), abs=1e-6)
    assert metrics["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-6)
    # (the padded copy counted in the loss's denominator read 21/22 of it)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
