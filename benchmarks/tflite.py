"""Export figures: artifact size and LiteRT latency per quantization, beside Keras predict latency.

For each model: export float32, float16, dynamic-range and int8 TFLite files
(int8 calibrated on a synthetic image folder), then time single-image
inference with LiteRT (2 threads; `invoke` alone, the formats in turn round after
round, as ratios to float32), with MediaPipe Tasks' ImageClassifier (as a
phone app runs the file, reading its metadata) and Keras `predict` on the same image.

    python benchmarks/tflite.py --models inception_v3 xception resnet50 nin
"""

import argparse
import contextlib
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasnets import export, registry  # noqa: E402


def synthetic_folder(root, size, per_class=12, classes=2, seed=0):
    """Smooth random images (large blobs of colour), so int8 calibration sees image-like ranges."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for label in range(classes):
            folder = os.path.join(root, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                image = tf.image.resize(rng.uniform(0, 255, (1, 6, 6, 3)), (size, size))[0]
                tf.io.write_file(os.path.join(folder, f"{i}.png"), tf.io.encode_png(tf.cast(image, tf.uint8)))
    return root


def quiet_export(model, **kwargs):
    """`export.export` without its progress lines (the table is the output); returns the export's card."""
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        return export.export(model, **kwargs)[1]


def median_ms(fn, repeats):
    return interleaved_ms({None: fn}, repeats)[None]


def interleaved_ms(fns, repeats):
    """{name: median milliseconds of fn()}, the fns timed in turn, round after round, so that a VM's drift in speed
    falls on all of them alike and their ratios hold."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def invoke_only(runner, image):
    """LiteRT's `invoke` on `image` set as the input once, as LiteRT's benchmark_model times a model (the
    (de)quantization of TFLiteRunner's NumPy side is left out)."""
    runner(image)
    return runner.interpreter.invoke


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["inception_v3", "xception", "resnet50", "nin"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quantize", nargs="+", default=list(export.QUANTIZATIONS), choices=export.QUANTIZATIONS,
                        help="which exports (default all; float32, 'none', is the base of the ratios and always runs "
                             "first)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; LiteRT with 2 threads, batch 1; Keras predict batch 1")
    print("Models have random weights: top-1 agreement with Keras on 48 synthetic images is indicative only.")
    print(f"{'model':<14} {'format':<10} {'size MB':>8} {'x f32':>6} {'ms':>8} {'x f32':>6} {'top-1 agree':>11} "
          f"{'MediaPipe ms':>12} {'x LiteRT':>8}")
    for name in args.models:
        size = registry.get_config(name).default_size
        with tempfile.TemporaryDirectory() as tmp:
            folder = synthetic_folder(os.path.join(tmp, "data"), size)
            model, _, _ = export.load_model(name)
            image = export.sample_images(model, folder)[0][:1]
            keras_ms = median_ms(lambda: model.predict(image, verbose=0), args.repeats)
            print(f"{name:<14} {'keras':<10} {'':>8} {'':>6} {keras_ms:>8.1f}", flush=True)
            exports = {}
            for quantize in ["none"] + [q for q in args.quantize if q != "none"]:
                path = os.path.join(tmp, f"{name}_{quantize}.tflite")
                # Random weights make near-uniform predictions, so the figures are reported, not enforced.
                card = quiet_export(model, format="tflite", quantize=quantize, data=folder, output=path,
                                    representative_count=24, verify=False)
                runner = export.TFLiteRunner(path, threads=2)
                images = export.sample_images(model, folder)[0]
                figures, _ = export.compare(model.predict(images, verbose=0), runner(images), "tflite", quantize)
                exports[quantize] = (path, card["size_bytes"] / 1e6, runner, figures["top1_agreement"])
            latency = interleaved_ms({q: invoke_only(runner, image) for q, (_, _, runner, _) in exports.items()},
                                     args.repeats)
            base_size, base_ms = exports["none"][1], latency["none"]
            for quantize, (path, mb, runner, agreement) in exports.items():
                with export.MediaPipeClassifier(path) as classifier:
                    mediapipe_ms = median_ms(lambda: classifier(image), args.repeats)
                ms = latency[quantize]
                label = "float32" if quantize == "none" else quantize
                print(f"{name:<14} {label:<10} {mb:>8.2f} {mb / base_size:>6.2f} {ms:>8.2f} {ms / base_ms:>6.2f} "
                      f"{agreement:>11.3f} {mediapipe_ms:>12.1f} {mediapipe_ms / ms:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
