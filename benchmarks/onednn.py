"""TensorFlow's CPU kernels with and without oneDNN, the choice kerasnets makes when it is imported first.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, when it loads, so each setting runs in its own child process (the
two alternate, `--repeats` times; the best of each is reported). Measured per setting:

* the input gradient of a 3x3 convolution (batch 64) at 8x8x64 ... 1x1x512, against its forward pass: the maps
  ResNet-18 has at 32x32 input, where TensorFlow's own kernel collapses;
* ResNet-18 training at 32x32 (Keras fit, Adam, batch 64, synthetic data), img/s;
* predict at batch 16 for inception_v3 (299), resnet50 (224) and mobilenet_v1 (224), img/s.

    python benchmarks/onednn.py [--repeats 2] [--smoke]
"""

import argparse
import json
import os
import subprocess
import sys
import time

CONV_SHAPES = ((8, 64), (4, 128), (2, 256), (1, 512))
PREDICT_MODELS = (("inception_v3", 299), ("resnet50", 224), ("mobilenet_v1_100", 224))


def _best_ms(fn, repeats=5):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def measure(smoke):
    import numpy as np

    import kerasnets  # noqa: F401  (sets TF_ENABLE_ONEDNN_OPTS=1 unless the parent set it)
    import keras
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    from kerasnets import training

    batch = 8 if smoke else 64
    results = {"onednn": bool(_pywrap_util_port.IsMklEnabled()), "conv_ms": {}, "predict_img_s": {}}
    for side, channels in CONV_SHAPES[-1:] if smoke else CONV_SHAPES:
        x = tf.random.normal((batch, side, side, channels))
        w = tf.random.normal((3, 3, channels, channels))
        dy = tf.random.normal((batch, side, side, channels))
        forward = tf.function(lambda: tf.nn.conv2d(x, w, 1, "SAME"))
        input_grad = tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"))
        results["conv_ms"][f"{side}x{side}x{channels}"] = {"forward": _best_ms(forward),
                                                          "input_gradient": _best_ms(input_grad)}
    steps = 2 if smoke else 10
    net = training.build_model("resnet18", 10, 32)
    net.compile(optimizer="adam", loss="categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (batch * steps, 32, 32, 3)).astype("float32")
    labels = keras.utils.to_categorical(np.arange(batch * steps) % 10, 10)
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).cache()
    net.fit(data, epochs=1, verbose=0)
    start = time.perf_counter()
    net.fit(data, epochs=2, verbose=0)
    results["resnet18_train_32_img_s"] = 2 * batch * steps / (time.perf_counter() - start)
    for name, size in PREDICT_MODELS[-1:] if smoke else PREDICT_MODELS:
        model = kerasnets.create_model(name, weights=None, input_shape=(size, size, 3))
        x = np.random.default_rng(0).uniform(0, 255, (16 if not smoke else 2, size, size, 3)).astype("float32")
        results["predict_img_s"][name] = len(x) / (_best_ms(lambda: model.predict(x, verbose=0), 3) / 1000)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.smoke)))
        return
    best = {}
    for _ in range(args.repeats):
        for setting in ("0", "1"):
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
            argv = [sys.executable, __file__, "--child"] + (["--smoke"] if args.smoke else [])
            out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            assert result["onednn"] == (setting == "1"), result
            previous = best.get(setting)
            if previous is None or result["resnet18_train_32_img_s"] > previous["resnet18_train_32_img_s"]:
                best[setting] = result
    off, on = best["0"], best["1"]
    print("| measure | oneDNN off | oneDNN on | on / off speed |\n|---|---:|---:|---:|")
    for shape, times in off["conv_ms"].items():
        for kind in ("forward", "input_gradient"):
            a, b = times[kind], on["conv_ms"][shape][kind]
            print(f"| 3x3 conv {kind.replace('_', ' ')} {shape}, ms | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
    a, b = off["resnet18_train_32_img_s"], on["resnet18_train_32_img_s"]
    print(f"| resnet18 training at 32x32, img/s | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    for name, a in off["predict_img_s"].items():
        b = on["predict_img_s"][name]
        print(f"| {name} predict, batch 16, img/s | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
