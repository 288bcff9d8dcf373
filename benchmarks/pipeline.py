"""Input pipeline throughput against the training step rate it has to feed.

Writes scikit-learn's digits as an image folder, then measures (1) how many
augmented training images per second `kerasnets.data.load` produces and
(2) how many images per second a training step consumes, for each model at
its own input size.

    python benchmarks/pipeline.py --models nin inception_v3 --batch-size 32
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from image_folders import write_digits_folder  # noqa: E402

from kerasnets import data, registry, training  # noqa: E402


def images_per_second(iterator, batches, batch_size):
    next(iterator)  # warm-up (fills caches, traces)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["nin", "inception_v3"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_digits_folder(os.path.join(tmp, "digits"))
        print(f"{os.cpu_count()} CPUs, batch {args.batch_size}")
        print(f"{'model':<14} {'size':>5} {'pipeline img/s':>15} {'train step img/s':>17} {'ratio':>6}")
        for name in args.models:
            size = registry.get_config(name).default_size
            found = data.load(root, size, args.batch_size)
            pipeline = images_per_second(iter(found.train.repeat()), args.batches, args.batch_size)
            model = training.build_model(name, len(found.class_names), size)
            model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
            batch = next(iter(found.train))
            model.train_on_batch(*batch)

            def steps():
                while True:
                    yield model.train_on_batch(*batch)

            step_rate = images_per_second(steps(), max(2, args.batches // 2), args.batch_size)
            print(f"{name:<14} {size:>5} {pipeline:>15.1f} {step_rate:>17.1f} {pipeline / step_rate:>6.1f}",
                  flush=True)
            keras.backend.clear_session()


if __name__ == "__main__":
    main()
