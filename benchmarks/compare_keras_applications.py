"""kerasnets vs keras.applications, side by side in one process.

For each model: build time; the first `predict` after a fresh build (what a
notebook user waits for: tracing included; 40 images make Keras' loop trace
twice, for the batch of 32 and the last 8); and steady CPU `predict`
throughput at the given batch sizes, with and without XLA (`jit_compile`), as
medians over interleaved repeats (kerasnets, keras, kerasnets, keras, ...) so
drift hits both alike.
Prints a table with ratios oriented so that > 1 means kerasnets is faster
(keras time / kerasnets time; kerasnets throughput / keras throughput)
and checks both give the same outputs with the same weights.

A roofline closes the report: this CPU's float32 matmul rate (a 4096 x 4096
product, the best any convolution kernel can do here) against each model's
steady rate in GFLOP/s (2 x multiply-adds per image x images per second).

    python benchmarks/compare_keras_applications.py --models inception_v3 --batch-sizes 16
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasnets  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from weight_files import randomize, write_keras_applications_h5  # noqa: E402

# registry name -> keras.applications builder
KERAS_APPLICATIONS = {
    "inception_v3": keras.applications.InceptionV3,
    "inception_resnet_v2": keras.applications.InceptionResNetV2,
    "xception": keras.applications.Xception,
    "resnet50": keras.applications.ResNet50,
    "vgg16": keras.applications.VGG16,
    "mobilenet_v1_100": keras.applications.MobileNet,
}


def build_pair(name, tmp):
    """keras.applications' model with random weights, and kerasnets' loaded from its published layout."""
    theirs = randomize(KERAS_APPLICATIONS[name](weights=None, classifier_activation=None))
    path = write_keras_applications_h5(theirs, os.path.join(tmp, "weights.h5"))
    ours = kerasnets.create_model(name, weights=path, classifier_activation=None)
    return ours, theirs


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(model, images):
    return len(images) / timed(lambda: model.predict(images, verbose=0), 1)


def first_predict(build, images):
    """Images per second of the first `predict` on a freshly built model, tracing included."""
    keras.backend.clear_session(free_memory=False)
    model = build()
    return throughput(model, images)


def matmul_gflops(n=4096, repeats=5):
    import tensorflow as tf

    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    product = tf.function(tf.linalg.matmul)
    product(a, b).numpy()
    return 2 * n ** 3 / timed(lambda: product(a, b).numpy(), repeats) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(KERAS_APPLICATIONS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--first-images", nargs="+", type=int, default=[16, 40],
                        help="image counts for the first predict after a build (default batch size 32: 40 = 32 + 8)")
    parser.add_argument("--jit", choices=["off", "on", "both"], default="both")
    args = parser.parse_args()
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} CPUs")
    rows, macs, steady = [], {}, {}
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            ours, theirs = build_pair(name, tmp)
            weights_file = os.path.join(tmp, "weights.h5")
            for label, weights in (("build, weights=None (s)", None), ("build + load .h5 (s)", weights_file)):
                builds = {"kerasnets": [], "keras": []}
                for _ in range(args.builds):
                    for who, fn in (("kerasnets", lambda: kerasnets.create_model(name, weights=weights)),
                                    ("keras", lambda: KERAS_APPLICATIONS[name](weights=weights))):
                        keras.backend.clear_session(free_memory=False)
                        builds[who].append(timed(fn, 1))
                med = {k: statistics.median(v) for k, v in builds.items()}
                rows.append((name, label, med["kerasnets"], med["keras"], med["keras"] / med["kerasnets"]))
            size = kerasnets.get_config(name).default_size
            for count in args.first_images:
                images = np.random.default_rng(1).uniform(-1, 1, (count, size, size, 3)).astype("float32")
                firsts = {"kerasnets": [], "keras": []}
                for _ in range(args.builds):
                    firsts["kerasnets"].append(first_predict(lambda: kerasnets.create_model(name, weights=weights_file),
                                                             images))
                    firsts["keras"].append(first_predict(lambda: KERAS_APPLICATIONS[name](weights=weights_file), images))
                med = {k: statistics.median(v) for k, v in firsts.items()}
                rows.append((name, f"first predict after build img/s, {count} images", med["kerasnets"], med["keras"],
                             med["kerasnets"] / med["keras"]))
        rng = np.random.default_rng(0)
        macs[name] = kerasnets.analysis.summarize(ours)[-1]["macs"]
        for batch in args.batch_sizes:
            images = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
            diff = np.max(np.abs(ours.predict(images, verbose=0) - theirs.predict(images, verbose=0)))
            for jit in {"off": [False], "on": [True], "both": [False, True]}[args.jit]:
                runs = {"kerasnets": [], "keras": []}
                for model in (ours, theirs):
                    model.compile(jit_compile=jit)
                    model.predict(images, verbose=0)  # trace (and compile) once
                for _ in range(args.repeats):
                    runs["kerasnets"].append(throughput(ours, images))
                    runs["keras"].append(throughput(theirs, images))
                med = {k: statistics.median(v) for k, v in runs.items()}
                label = f"predict img/s, batch {batch}, jit {'on' if jit else 'off'}"
                rows.append((name, label, med["kerasnets"], med["keras"], med["kerasnets"] / med["keras"]))
                if not jit:
                    steady[name, batch] = med
            rows.append((name, f"max |diff| of logits, batch {batch}", diff, 0.0, float("nan")))
    width = max(len(r[1]) for r in rows)
    print(f"{'model':<14} {'measure':<{width}} {'kerasnets':>10} {'keras':>10} {'ratio':>7}")
    for name, label, a, b, ratio in rows:
        print(f"{name:<14} {label:<{width}} {a:>10.4g} {b:>10.4g} {ratio:>7.2f}")
    peak = matmul_gflops()
    print(f"\nRoofline: float32 matmul on this CPU {peak:.0f} GFLOP/s (jit off)")
    for (name, batch), med in steady.items():
        rates = {who: 2 * macs[name] * rate / 1e9 for who, rate in med.items()}
        print(f"{name:<14} batch {batch:<3} kerasnets {rates['kerasnets']:6.0f} GFLOP/s ({rates['kerasnets'] / peak:4.0%})"
              f"   keras {rates['keras']:6.0f} GFLOP/s ({rates['keras'] / peak:4.0%})"
              f"   ratio ceiling {peak / rates['keras']:.2f}")


if __name__ == "__main__":
    main()
