"""Child process for test_backends.py: runs kerasnets on the Keras backend named by KERAS_BACKEND.

    KERAS_BACKEND=jax python tests/run_on_backend.py CASES.json OUT.npz

Each case builds a model with `kerasnets.create_model(name, weights=FILE, **kwargs)`
(or `keras.saving.load_model(FILE)` for a `.keras` file), predicts the case's
images, and stores the outputs under the case's key.
"""

import json
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
        outputs = model.predict(images[key], verbose=0)
        for i, output in enumerate(outputs if isinstance(outputs, list) else [outputs]):
            results[f"{key}/{i}"] = np.asarray(output)
        print(f"{key}: done on {keras.backend.backend()}", flush=True)
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
