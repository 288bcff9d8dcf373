"""GPU throughput by precision: float32 against mixed float16, training and inference.

Train and predict img/s of inception_v3 at 299x299 and resnet50 at 224x224, batch 128, in float32 and under
`mixed_float16` (Keras scales the loss), on a synthetic batch held on the device (the input pipeline is not
measured), with the GPU's name. Goals on one H100: mixed float16 >= 2.5x float32, inception_v3 training
>= 2,000 img/s.

    python benchmarks/gpu.py                 # on a machine with an NVIDIA GPU
    python benchmarks/gpu.py --smoke         # tiny sizes, any machine (the test suite runs this on CPU)
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from precision import train_images_per_second  # noqa: E402

import kerasnets  # noqa: E402
import keras  # noqa: E402

MODELS = {"inception_v3": 299, "resnet50": 224}


def predict_images_per_second(name, size, batch_size, policy, steps, warmup=3):
    """img/s of `name`'s compiled forward pass under `policy`, on one synthetic batch on the device."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = kerasnets.create_model(name, weights=None, input_shape=(size, size, 3))
        images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch_size, size, size, 3)).astype("float32"))
        forward = tf.function(lambda: model(images, training=False))
        for _ in range(warmup):
            forward().numpy()
        start = time.perf_counter()
        for _ in range(steps):
            outputs = forward()
        outputs.numpy()
        return steps * batch_size / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def device_name():
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU (no GPU visible)"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"{details.get('device_name', 'GPU')} (compute capability {details.get('compute_capability')})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="registry names (sizes: " +
                        ", ".join(f"{name} {size}" for name, size in MODELS.items()) + ", else the model's default)")
    parser.add_argument("--smoke", action="store_true", help="batch 2 at 32x32, 1 step: checks the script runs")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    batch, steps, warmup = (2, 1, 1) if args.smoke else (args.batch_size, args.steps, 3)
    rows = []
    print(f"device: {device_name()}; TensorFlow {tf.__version__}, Keras {keras.__version__}\n")
    print("| model | size | batch | measure | float32 img/s | mixed_float16 img/s | ratio |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name in args.models:
        size = 32 if args.smoke else MODELS.get(name) or kerasnets.get_config(name).default_size
        for measure, rate in (("train", train_images_per_second), ("predict", predict_images_per_second)):
            rates = {policy: rate(name, size, batch, policy, steps, warmup) for policy in ("float32", "mixed_float16")}
            ratio = rates["mixed_float16"] / rates["float32"]
            rows.append({"model": name, "size": size, "batch": batch, "measure": measure, **rates, "ratio": ratio})
            print(f"| {name} | {size} | {batch} | {measure} | {rates['float32']:.1f} | {rates['mixed_float16']:.1f} "
                  f"| {ratio:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name(), "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
