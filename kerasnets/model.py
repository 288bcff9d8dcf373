"""What kerasnets' builders return: a plain functional keras.Model whose `predict` is faster.

Why: on in-memory arrays, Keras' `predict` feeds batches through a tf.data
pipeline whose iterator runs inside the compiled step; on a CPU its threads
compete with the convolutions (measured here with keras.applications'
InceptionV3 at batch 16: `predict` ran at 12-16 img/s from call to call,
`predict_on_batch` -- the same compiled forward pass, fed directly -- at a
steady 17). For arrays and tensors, kerasnets' `predict` slices the
batches itself and calls one compiled forward pass per batch (honouring
`compile(jit_compile=...)`), with the usual progress bar. That pass is traced
once for every batch size, so a short last batch costs no second trace (Keras'
own path traces again for it); a model open to any image size is traced once
for every size too, or once per image size where it cannot be traced so (a
bilinear `UpSampling2D` cannot run on a grid of unknown size). Datasets,
generators, callbacks, `steps`, distribution strategies and other backends
take Keras' own path, as does every instance with `model.fast_predict = False`.
`compile`, `fit` and `evaluate` are Keras' own, unchanged. The method is the
instance's own (`with_fast_predict`), so the model's class is Keras'
`Functional` and whatever the user saves opens where kerasnets is not installed.
"""

import types

import keras
import numpy as np

from kerasnets import layers  # noqa: F401  (registers the layers that files saved by kerasnets hold)

FAST_PREDICT_DEFAULT = True


def _is_array(x):
    if isinstance(x, np.ndarray):
        return True
    try:
        import tensorflow as tf

        return isinstance(x, tf.Tensor)
    except ImportError:  # another backend
        return False


def _uses_fast_path(model, x, steps, callbacks):
    if not getattr(model, "fast_predict", False) or steps is not None or callbacks:
        return False
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    if tf.distribute.has_strategy() or model.distribute_strategy is not tf.distribute.get_strategy():
        return False
    return _is_array(x) and len(model.inputs) == 1


def _batch_spec(model):
    import tensorflow as tf

    return tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype)


def _forward(model, image_shape):
    """The compiled forward pass for images of `image_shape` (height, width, channels).

    One trace serves every batch size, and for a model left open to any size
    every image size, where the model can be traced so; where it cannot
    (bilinear `UpSampling2D` needs its grid's size when traced), one trace
    per image size.
    """
    import tensorflow as tf

    jit = bool(model.compiled and model.jit_compile)
    forwards = model.__dict__.get("_kerasnets_forwards")
    if forwards is None:  # (a plain dict, out of Keras' attribute tracking)
        forwards = {}
        object.__setattr__(model, "_kerasnets_forwards", forwards)

    def traced(spec):
        return tf.function(lambda images: model(images, training=False), input_signature=[spec],
                           jit_compile=jit, autograph=False)

    spec = _batch_spec(model)
    if (jit, None) not in forwards:
        forward = traced(spec)
        if not spec.shape[1:].is_fully_defined():
            try:
                forward.get_concrete_function()
            except Exception:  # e.g. "Using a symbolic tf.Tensor as a Python bool"; a real error recurs per size
                forward = None
        forwards[(jit, None)] = forward
    if forwards[(jit, None)] is not None:
        return forwards[(jit, None)]
    key = (jit, tuple(image_shape))
    if key not in forwards:
        forwards[key] = traced(tf.TensorSpec((None,) + tuple(image_shape), spec.dtype))
    return forwards[key]


def _fast_predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
    """`keras.Model.predict`, with the fast path of the module docstring for arrays and tensors."""
    if not _uses_fast_path(self, x, steps, callbacks):
        return keras.Model.predict(self, x, batch_size=batch_size, verbose=verbose, steps=steps,
                                   callbacks=callbacks)
    import tensorflow as tf

    spec = _batch_spec(self)
    if not spec.is_compatible_with(tf.TensorSpec(x.shape, spec.dtype)):
        raise ValueError(f"x has shape {tuple(x.shape)}; {self.name} takes images of shape "
                         f"{tuple(spec.shape)} (None: any size)")
    if len(x) == 0:
        raise ValueError(f"x holds no images (shape {tuple(x.shape)})")
    batch_size = 32 if batch_size is None else batch_size
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = tf.cast(x, spec.dtype) if isinstance(x, tf.Tensor) else np.asarray(x, spec.dtype.as_numpy_dtype)
    forward = _forward(self, x.shape[1:])
    total = -(-len(x) // batch_size)
    progress = keras.utils.Progbar(total, verbose=1 if verbose == "auto" else verbose) if verbose else None
    outputs = []
    for step, start in enumerate(range(0, len(x), batch_size)):
        outputs.append(keras.tree.map_structure(np.asarray, forward(x[start:start + batch_size])))
        if progress is not None:
            progress.update(step + 1)
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)


def with_fast_predict(model):
    """Gives this one `model` (a functional keras.Model) the fast `predict`; returns it.

    The method is set on the instance, not by a subclass, so the model stays a
    plain `Functional`: a file the user saves from it opens with Keras alone.
    """
    model.fast_predict = FAST_PREDICT_DEFAULT
    model.predict = types.MethodType(_fast_predict, model)
    return model


def functional(inputs, outputs, name=None):
    """`keras.Model(inputs, outputs, name=name)` with the fast predict: what every builder returns."""
    return with_fast_predict(keras.Model(inputs, outputs, name=name))


@keras.saving.register_keras_serializable(package="kerasnets")
class KerasnetsModel(keras.Model):
    """The model class of kerasnets 0.1's builders, kept so files saved from them still load.

    Builders now return plain functional models (`functional`); this class
    only carries the same fast predict.
    """

    fast_predict = FAST_PREDICT_DEFAULT
    predict = _fast_predict


# Keras' legacy HDF5 loader looks custom classes up by their bare class name, not the registered
# "kerasnets>KerasnetsModel", so a whole-model `.h5` save would not load without this.
keras.saving.get_custom_objects().setdefault("KerasnetsModel", KerasnetsModel)


def load_model(path, compile=False, **kwargs):
    """`keras.saving.load_model(path)` with the fast predict on a functional model.

    kerasnets saves plain functional models (a `model.keras` opens with Keras
    alone); loading one here gives it the faster predict back.
    """
    model = keras.saving.load_model(path, compile=compile, **kwargs)
    if type(model).__name__ == "Functional" and len(model.inputs) == 1:
        with_fast_predict(model)
    return model
