"""Training and inference throughput by precision on this CPU: float32 against mixed bfloat16.

* train img/s, float32 vs `mixed_bfloat16` (resnet18 and inception_v3 at 96x96 by default): the model's own
  compiled `train_step` on one synthetic batch held in memory, so the input pipeline is not measured;
* predict img/s at batch 16, kerasnets float32, kerasnets bfloat16 (`kerasnets.with_precision`: batch norms
  folded into the convolutions) and keras.applications float32 (inception_v3, resnet50, xception, ...), medians
  of interleaved repeats, and the bfloat16 copy with its batch norms kept, to show what folding gives;
* top-1 agreement of the bfloat16 copy with the float32 model on the digits test split, for a resnet18
  trained on scikit-learn's digits with the defaults (`--skip-digits` leaves it out).

The CPU's bfloat16 flags are printed beside the figures.

    python benchmarks/precision.py
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
import tensorflow as tf  # noqa: E402

import kerasnets  # noqa: E402
from kerasnets import precision  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare_keras_applications import KERAS_APPLICATIONS, build_pair  # noqa: E402


def train_images_per_second(name, size, batch_size, policy, steps, warmup=3, jit_compile=False):
    """img/s of `name`'s compiled train step under `policy`, on one synthetic batch kept where the model runs."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = kerasnets.create_model(name, weights=None, input_shape=(size, size, 3), classes=100)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy",
                      jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        images = tf.constant(rng.uniform(-1, 1, (batch_size, size, size, 3)).astype("float32"))
        labels = tf.constant(rng.integers(0, 100, batch_size))
        step = tf.function(lambda: model.train_step((images, labels)), jit_compile=jit_compile)
        for _ in range(warmup):  # trace and warm up
            float(step()["loss"])
        start = time.perf_counter()
        for _ in range(steps):
            logs = step()
        float(logs["loss"])  # wait for the last step
        return steps * batch_size / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def predict_images_per_second(models, images, repeats):
    """Median img/s of each model's `predict` on `images`, interleaved so drift hits all alike."""
    times = {name: [] for name in models}
    for model in models.values():
        model.predict(images, batch_size=len(images), verbose=0)  # trace
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict(images, batch_size=len(images), verbose=0)
            times[name].append(time.perf_counter() - start)
    return {name: len(images) / statistics.median(t) for name, t in times.items()}


def digits_agreement(tmp):
    """(test accuracy, bfloat16-vs-float32 top-1 agreement) for a resnet18 trained on the digits with defaults."""
    from image_folders import write_digits_folder

    root = write_digits_folder(os.path.join(tmp, "digits"))
    kerasnets.training.train("resnet18", root, image_size=32, epochs=8, output=os.path.join(tmp, "run"), verbose=0)
    model = keras.saving.load_model(os.path.join(tmp, "run", "model.keras"))
    fast = kerasnets.with_precision(model, "bfloat16")
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in kerasnets.data.load(root, 32, 64).eval])
    images, labels = np.concatenate(images), np.concatenate(labels)
    full, half = model.predict(images, verbose=0).argmax(1), fast.predict(images, verbose=0).argmax(1)
    return float(np.mean(full == labels)), float(np.mean(full == half)), len(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-models", nargs="*", default=["resnet18", "inception_v3"])
    parser.add_argument("--train-size", type=int, default=96)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--predict-models", nargs="*", default=list(KERAS_APPLICATIONS))
    parser.add_argument("--predict-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args()

    flags = sorted(set(precision.cpu_flags()) & {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"})
    print(f"CPU flags: {', '.join(flags) or 'none of avx512f/avx512_bf16/amx'}; auto precision: "
          f"{precision.resolve('auto')}; TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} cores\n")
    print("| model | measure | float32 | bfloat16 | keras.applications float32 | bf16 / f32 | bf16 / keras | "
          "bfloat16, batch norms kept |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.train_models:
        rates = {policy: train_images_per_second(name, args.train_size, args.train_batch, policy, args.train_steps)
                 for policy in ("float32", "mixed_bfloat16")}
        print(f"| {name} | train img/s, {args.train_size}x{args.train_size}, batch {args.train_batch} | "
              f"{rates['float32']:.1f} | {rates['mixed_bfloat16']:.1f} | | "
              f"{rates['mixed_bfloat16'] / rates['float32']:.2f} | | |", flush=True)
    for name in args.predict_models:
        size = kerasnets.get_config(name).default_size
        with tempfile.TemporaryDirectory() as tmp:
            ours, theirs = build_pair(name, tmp)  # the same random weights, through the published layout
        models = {"float32": ours, "bfloat16": kerasnets.with_precision(ours, "bfloat16"), "keras": theirs,
                  "unfolded": kerasnets.with_precision(ours, "bfloat16", fold_batch_norms=False)}
        images = np.random.default_rng(0).uniform(-1, 1, (args.predict_batch, size, size, 3)).astype("float32")
        rates = predict_images_per_second(models, images, args.repeats)
        agree = np.mean(models["float32"].predict(images, verbose=0).argmax(1) ==
                        models["bfloat16"].predict(images, verbose=0).argmax(1))
        print(f"| {name} | predict img/s, batch {args.predict_batch} (random weights; top-1 agreement {agree:.2f}) | "
              f"{rates['float32']:.2f} | {rates['bfloat16']:.2f} | {rates['keras']:.2f} | "
              f"{rates['bfloat16'] / rates['float32']:.2f} | {rates['bfloat16'] / rates['keras']:.2f} | "
              f"{rates['unfolded']:.2f} |", flush=True)
    if not args.skip_digits:
        with tempfile.TemporaryDirectory() as tmp:
            accuracy, agreement, count = digits_agreement(tmp)
        print(f"\nresnet18 trained on digits (defaults): float32 test accuracy {accuracy:.4f}; bfloat16 copy agrees "
              f"on top-1 for {agreement:.4f} of the {count} test images")


if __name__ == "__main__":
    main()
