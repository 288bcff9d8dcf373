"""Child process for test_backends.py: runs kerasnets on the Keras backend named by KERAS_BACKEND.

    KERAS_BACKEND=jax python tests/run_on_backend.py CASES.json OUT.npz

Each case builds a model with `kerasnets.create_model(name, weights=FILE, **kwargs)`
(or `keras.saving.load_model(FILE)` for a `.keras` file), predicts the case's
images (one eager call), and stores the outputs under the case's key.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np

import kerasnets


def main(cases_path, out_path):
    cases = json.load(open(cases_path))
    images = np.load(cases_path.replace(".json", "_images.npz"))
    results = {"backend": np.array(keras.backend.backend())}
    for key, case in cases.items():
        if case["weights"].endswith(".keras"):
            model = keras.saving.load_model(case["weights"])
        else:
            model = kerasnets.create_model(case["name"], weights=case["weights"], **case["kwargs"])
        # Called eagerly: compiling a 150-layer network for one batch costs more than running it.
        outputs = keras.tree.map_structure(keras.ops.convert_to_numpy, model(images[key], training=False))
        for i, output in enumerate(outputs if isinstance(outputs, list) else [outputs]):
            results[f"{key}/{i}"] = np.asarray(output)
        print(f"{key}: done on {keras.backend.backend()}", flush=True)
    np.savez(out_path, **results)


def run_on_jax(root, cases, images, timeout=1200):
    """Runs `cases` ({key: {name, weights, kwargs}}) on `images` ({key: array}) in a JAX child process;
    returns {key: [outputs]}. Files go to the folder `root`."""
    cases_path = os.path.join(root, "cases.json")
    json.dump(cases, open(cases_path, "w"))
    np.savez(os.path.join(root, "cases_images.npz"), **images)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, os.path.abspath(__file__), cases_path, os.path.join(root, "jax.npz")],
                            env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    found = np.load(os.path.join(root, "jax.npz"))
    assert str(found["backend"]) == "jax"
    return {key: [found[name] for name in sorted(n for n in found.files if n.startswith(f"{key}/"))]
            for key in cases}


if __name__ == "__main__":
    main(*sys.argv[1:])
