"""Segmentation figures: TFLite size and LiteRT latency of the phone-sized heads, predict throughput against
keras-hub's DeepLabV3ImageSegmenter in one process, and the mean IoU each head and backbone learns.

    python benchmarks/segmentation.py                    # all parts (TFLite and keras-hub at 256x256)
    python benchmarks/segmentation.py --only miou        # mean IoU per head and backbone on digits-on-photos
    python benchmarks/segmentation.py --smoke            # tiny settings (the test suite runs this)

TFLite: U-Net and DeepLab v3 on MobileNet v1 (alpha 1.0) for raw RGB pixels, exported float32 and int8 (calibrated
on a synthetic two-class folder), timed on one image with LiteRT (XNNPACK, 2 threads) beside Keras predict.

keras-hub: its DeepLabV3ImageSegmenter as its published `deeplab_v3_plus_resnet50_pascalvoc` preset is configured
(ResNet-50 v1, ASPP on P5 at rates 6/12/18, DeepLab v3+ decoder from P2; random weights, built from that config)
against kerasnets' deeplab_v3 on resnet50 (output stride 16, atrous) at the same input size and batch: img/s of
each, interleaved, with each model's multiply-adds so the ratio can be read per operation too. keras-hub is not a
dependency of kerasnets: `pip install keras-hub` first (without it the comparison is skipped, saying so).

mIoU: `kerasnets train HEAD --backbone BACKBONE` with the defaults (as README's example, 64x64) on the test suite's
digits-on-photos set, two classes (stroke vs photo) and eleven (photo and which digit), one row per pair.
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kerasnets  # noqa: E402,F401  (before TensorFlow: it picks the CPU kernels)
import numpy as np  # noqa: E402
import keras  # noqa: E402

from kerasnets import export, layers as kn_layers, registry  # noqa: E402
from tflite import median_ms, quiet_export  # noqa: E402  (the TFLite benchmark beside this one)


def synthetic_segmentation_folder(root, size, count=8, seed=0):
    """ROOT/{train,test}/{images,masks}: smooth random images, a disc of class 1 on class 0."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for split in ("train", "test"):
        for kind in ("images", "masks"):
            os.makedirs(os.path.join(root, split, kind), exist_ok=True)
        for i in range(count):
            (cy, cx), r = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.1, 0.3) * size
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype("uint8")
            image = rng.uniform(0, 255, (4, 4, 3))
            image = np.asarray(Image.fromarray(image.astype("uint8")).resize((size, size), Image.BILINEAR), "float32")
            image[mask == 1] = 0.5 * image[mask == 1] + 0.5 * np.array([255, 64, 0])
            Image.fromarray(image.astype("uint8")).save(os.path.join(root, split, "images", f"{i}.png"))
            Image.fromarray(mask).save(os.path.join(root, split, "masks", f"{i}.png"))
    return root


def raw_pixel_head(head, backbone, size, classes=2):
    """`head` on `backbone` taking raw RGB pixels in [0, 255], as `kerasnets train` builds it."""
    preprocessing = registry.get_config(backbone).preprocessing
    _, x = kn_layers.raw_pixel_input(size, preprocessing)
    return kerasnets.create_model(head, backbone=backbone, input_tensor=x, classes=classes)


def tflite_rows(size, repeats, backbone):
    print(f"\n{os.cpu_count()} CPUs; LiteRT (XNNPACK) with 2 threads, one {size}x{size} image; random weights")
    print("| model | Keras ms | float32 MB | int8 MB | int8 / float32 size | float32 ms | int8 ms | int8 / float32 "
          "latency | int8 pixel agreement |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = synthetic_segmentation_folder(os.path.join(tmp, "data"), size)
        for head in ("unet", "deeplab_v3"):
            model = raw_pixel_head(head, backbone, size)
            images, _ = export.sample_images(model, folder)
            keras_ms = median_ms(lambda: model.predict(images[:1], verbose=0), repeats)
            figures = {}
            for quantize in ("none", "int8"):
                path = os.path.join(tmp, f"{head}_{quantize}.tflite")
                card = quiet_export(model, format="tflite", quantize=quantize, data=folder, output=path,
                                    representative_count=8, verify=False)
                runner = export.TFLiteRunner(path, threads=2)
                agreement = float(np.mean(np.argmax(runner(images), -1) == np.argmax(model.predict(images, verbose=0),
                                                                                     -1)))
                figures[quantize] = (card["size_bytes"] / 1e6, median_ms(lambda: runner(images[:1]), repeats),
                                     agreement)
            (f32_mb, f32_ms, _), (i8_mb, i8_ms, i8_agree) = figures["none"], figures["int8"]
            print(f"| {head} on {backbone} | {keras_ms:.1f} | {f32_mb:.2f} | {i8_mb:.2f} | {i8_mb / f32_mb:.2f} | "
                  f"{f32_ms:.1f} | {i8_ms:.1f} | {i8_ms / f32_ms:.2f} | {i8_agree:.3f} |", flush=True)


def keras_hub_deeplab(size, classes):
    """keras-hub's DeepLabV3ImageSegmenter configured as its ResNet-50 PASCAL VOC preset (random weights)."""
    import keras_hub

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
        use_pre_activation=False, image_shape=(size, size, 3))
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, spatial_pyramid_pooling_key="P5", upsampling_size=8, dilation_rates=[6, 12, 18],
        low_level_feature_key="P2", projection_filters=48, image_shape=(size, size, 3))
    segmenter = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=classes)
    return keras.Model(segmenter.inputs, segmenter.outputs)  # the bare network: its forward pass, as ours


def graph_flops(model, size):
    """Floating-point operations of one image's forward pass as TensorFlow's profiler counts them on the frozen
    graph: one counter for both models (keras-hub nests its layers where kerasnets' analysis does not look)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    forward = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function(tf.TensorSpec((1, size, size, 3))))
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    return tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops


def with_keras_conv2d(model):
    """The same model and weights with each AtrousConv2D (the ASPP's, run tap by tap) as Keras' own Conv2D."""
    from kerasnets.layers.atrous import AtrousConv2D

    def clone(layer):
        kind = keras.layers.Conv2D if isinstance(layer, AtrousConv2D) else layer.__class__
        return kind.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def compare_keras_hub(size, batch, repeats, classes=21):
    if importlib.util.find_spec("keras_hub") is None:
        print("\nkeras-hub is not installed (pip install keras-hub): its DeepLabV3 comparison is skipped")
        return
    theirs = keras_hub_deeplab(size, classes)
    ours = kerasnets.create_model("deeplab_v3", backbone="resnet50", input_shape=(size, size, 3), classes=classes)
    images = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    runs = {"kerasnets deeplab_v3/resnet50 (OS 16)": ours, "keras-hub DeepLabV3ImageSegmenter/ResNet-50 preset": theirs,
            "kerasnets, the ASPP as Keras' Conv2D (space-to-batch)": with_keras_conv2d(ours)}
    times = {name: [] for name in runs}
    for model in runs.values():
        model.predict(images, batch_size=batch, verbose=0)  # trace and warm up
    for _ in range(repeats):  # interleaved, so both see the same machine
        for name, model in runs.items():
            start = time.perf_counter()
            model.predict(images, batch_size=batch, verbose=0)
            times[name].append(time.perf_counter() - start)
    print(f"\nPredict, batch {batch} at {size}x{size}, {classes} classes, median of {repeats} (one process, interleaved)")
    print("| model | params | GFLOP / image (TF profiler) | img/s | GFLOP/s |")
    print("|---|---:|---:|---:|---:|")
    speeds = {}
    for name, model in runs.items():
        flops = graph_flops(model, size) / 1e9
        speed = batch / statistics.median(times[name])
        speeds[name] = speed
        print(f"| {name} | {model.count_params():,} | {flops:.2f} | {speed:.2f} | {flops * speed:.1f} |")
    ours_speed, theirs_speed, plain_speed = speeds.values()
    print(f"kerasnets / keras-hub img/s: {ours_speed / theirs_speed:.2f}; the ASPP by taps / as Conv2D: "
          f"{ours_speed / plain_speed:.2f}")


def miou_rows(heads, backbones, classes, train, test, size, epochs, keep=None):
    """Mean IoU of `kerasnets train HEAD --backbone BACKBONE` with the defaults on the digits-on-photos set of the
    test suite (scikit-learn's digits pasted onto its two photos; `classes` 2: stroke vs photo, 11: which digit)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from image_folders import write_digits_on_photos
    from kerasnets import cli

    print(f"\n{classes} classes, {train} training and {test} test images at {size}x{size}, {epochs} epoch(s), "
          "the defaults (`kerasnets train HEAD --backbone BACKBONE`)\n")
    print("| head | backbone | test mean IoU | photo IoU | mean IoU of the other classes | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    with contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory() as work:
        root = write_digits_on_photos(os.path.join(work, "data"), classes=classes, train=train, test=test, size=size)
        for head in heads:
            for backbone in backbones:
                output = os.path.join(work, f"{head}_{backbone}")
                print(f"training {head} on {backbone} ...", file=sys.stderr, flush=True)  # minutes each
                start = time.perf_counter()
                log = io.StringIO()
                # the run's own lines would break the table; a failure's one line goes to stderr
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                    try:
                        status = cli.main(["train", head, "--backbone", backbone, "--data", root, "--image-size",
                                           str(size), "--epochs", str(epochs), "--output", output, "--verbose", "0"])
                    except Exception as error:  # one failed pair leaves the others' rows
                        status = 1
                        print(f"{type(error).__name__}: {error}")
                seconds = time.perf_counter() - start
                if status != 0:
                    lines = [line for line in log.getvalue().splitlines() if line.strip()] or [""]
                    print(f"| {head} | {backbone} | failed (exit {status}): {lines[-1][-300:].replace('|', '/')} "
                          f"| | | {seconds:.0f} |")
                    continue
                metrics = json.load(open(os.path.join(output, "metrics.json")))
                others = [iou for iou in metrics["iou_per_class"][1:] if iou is not None]
                print(f"| {head} | {backbone} | {metrics['mean_iou']:.3f} | {metrics['iou_per_class'][0]:.3f} | "
                      f"{statistics.mean(others) if others else float('nan'):.3f} | {seconds:.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--backbone", default="mobilenet_v1_100", help="the TFLite heads' backbone")
    parser.add_argument("--only", choices=("tflite", "keras-hub", "miou"), help="one part (default all)")
    parser.add_argument("--heads", default="fcn8s,unet,deeplab_v3", help="mIoU part: the heads (comma-separated)")
    parser.add_argument("--backbones", default="resnet18,mobilenet_v1_100", help="mIoU part: the backbones")
    parser.add_argument("--classes", type=int, choices=(2, 11), action="append",
                        help="mIoU part: 2 and/or 11 classes (default both)")
    parser.add_argument("--train", type=int, default=400, help="mIoU part: training images")
    parser.add_argument("--test", type=int, help="mIoU part: test images (default a quarter of --train)")
    parser.add_argument("--epochs", type=int, default=4, help="mIoU part")
    parser.add_argument("--keep", metavar="DIR", help="mIoU part: write the data and the runs (curves, sample "
                        "predictions, metrics.json) here, to keep them (default a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="64x64, the smallest MobileNet, 2 repeats; the mIoU "
                        "part: U-Net on it, 32x32, 16 images, 1 epoch")
    args = parser.parse_args()
    if args.test is not None and args.test < 1:
        parser.error(f"--test must be at least 1, got {args.test}")
    if args.keep and os.path.isdir(args.keep) and os.listdir(args.keep):
        parser.error(f"--keep {args.keep!r} already holds files: name a new or empty folder (runs are never "
                     "written over)")
    heads, backbones, miou_size = args.heads.split(","), args.backbones.split(","), 64
    if args.smoke:
        args.size, args.batch, args.repeats, args.backbone = 64, 2, 2, "mobilenet_v1_025"
        heads, backbones, miou_size, args.train, args.epochs = ["unet"], ["mobilenet_v1_025"], 32, 16, 1
        args.classes = args.classes or [2]
    if args.only in (None, "tflite"):
        tflite_rows(args.size, args.repeats, args.backbone)
    if args.only in (None, "keras-hub"):
        compare_keras_hub(args.size, args.batch, args.repeats)
    if args.only in (None, "miou"):
        for classes in args.classes or (2, 11):
            test = args.test if args.test is not None else max(1, args.train // 4)
            keep = args.keep and os.path.join(args.keep, f"{classes}_classes")
            miou_rows(heads, backbones, classes, args.train, test, miou_size, args.epochs, keep)


if __name__ == "__main__":
    main()
