"""The builders use keras.layers/keras.ops only: on JAX they build, load every weight layout and agree with TF.

Each case's weights and reference outputs are made here, on TensorFlow; one child process with
KERAS_BACKEND=jax builds the same models from the same files (keras.applications' published .h5,
Keras 3 .weights.h5, a whole .keras file) and its outputs must match to float precision.
"""

import keras
import numpy as np
import pytest

import kerasnets
from run_on_backend import run_on_jax
from weight_files import randomize, rel_max_diff, write_keras_applications_h5


@pytest.fixture(scope="module")
def on_jax(tmp_path_factory):
    """{case: (TF outputs, JAX outputs)} for the cases below."""
    root = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(0)
    cases, images, expected = {}, {}, {}

    def add(key, name, weights, model, kwargs=None, size=None):
        size = size or model.input_shape[1]
        images[key] = rng.uniform(-1, 1, (2, size, size, 3)).astype("float32")
        outputs = model.predict(images[key], verbose=0)
        expected[key] = outputs if isinstance(outputs, list) else [outputs]
        cases[key] = {"name": name, "weights": weights, "kwargs": kwargs or {}}

    # keras.applications' published layout, read by name table (reference: keras.applications itself).
    for key, builder, size in (("inception_v3", keras.applications.InceptionV3, 75),
                               ("xception", keras.applications.Xception, 71)):
        reference = randomize(builder(weights=None, input_shape=(size, size, 3), classifier_activation=None))
        path = write_keras_applications_h5(reference, str(root / f"{key}.h5"))
        add(key, key, path, reference, {"input_shape": [size, size, 3], "classifier_activation": None})
    # Keras 3 .weights.h5 from kerasnets models: the aux head (every registered model's plain file is in
    # test_conformance.py).
    for key, kwargs in (("inception_v3_aux", {"depth_multiplier": 0.1, "input_shape": [107, 107, 3],
                                              "aux_logits": True, "classes": 5, "classifier_activation": None}),):
        name = key.removesuffix("_aux")
        model = randomize(kerasnets.create_model(name, **kwargs), seed=1)
        path = str(root / f"{key}.weights.h5")
        model.save_weights(path)
        add(key, name, path, model, kwargs)
    # A whole .keras file (NIN with batch norm; logits, as a saturated softmax would hide errors).
    model = randomize(kerasnets.nin(batch_norm=True, classifier_activation=None), seed=2)
    model.save(str(root / "nin.keras"))
    add("nin", "nin", str(root / "nin.keras"), model)

    found = run_on_jax(str(root), cases, images)
    return {key: (expected[key], found[key]) for key in cases}


@pytest.mark.parametrize("case", ["inception_v3", "xception", "inception_v3_aux", "nin"])
def test_jax_backend_gives_tensorflow_outputs(on_jax, case):
    expected, found = on_jax[case]
    for tf_output, jax_output in zip(expected, found):
        assert tf_output.shape == jax_output.shape
        assert rel_max_diff(jax_output, tf_output) <= 1e-5
