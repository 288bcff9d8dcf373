"""The Model class kerasnets' builders return: a functional keras.Model with a faster `predict`.

Why: on in-memory arrays, Keras' `predict` feeds batches through a tf.data
pipeline whose iterator runs inside the compiled step; on a CPU its threads
compete with the convolutions (measured here with keras.applications'
InceptionV3 at batch 16: `predict` ran at 12-16 img/s from call to call,
`predict_on_batch` -- the same compiled forward pass, fed directly -- at a
steady 17). For arrays and tensors, `KerasnetsModel.predict` slices the
batches itself and calls one compiled forward pass per batch (honouring
`compile(jit_compile=...)`), with the usual progress bar. That pass is traced
once for every batch size, so a short last batch costs no second trace (Keras'
own path traces again for it). Datasets, generators, callbacks, `steps`,
distribution strategies and other backends take Keras' own path, as does
every instance with `model.fast_predict = False`.
`compile`, `fit` and `evaluate` are Keras' own, unchanged.
"""

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


@keras.saving.register_keras_serializable(package="kerasnets")
class KerasnetsModel(keras.Model):
    """A functional keras.Model; see the module docstring for its `predict` fast path."""

    fast_predict = FAST_PREDICT_DEFAULT

    def _uses_fast_path(self, x, steps, callbacks):
        if not self.fast_predict or steps is not None or callbacks or keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        if tf.distribute.has_strategy() or self.distribute_strategy is not tf.distribute.get_strategy():
            return False
        return _is_array(x) and len(self.inputs) == 1

    def _batch_spec(self):
        import tensorflow as tf

        return tf.TensorSpec((None,) + tuple(self.inputs[0].shape[1:]), self.inputs[0].dtype)

    def _forward(self):
        import tensorflow as tf

        jit = bool(self.compiled and self.jit_compile)
        if getattr(self, "_kerasnets_forward_jit", None) != jit:
            self._kerasnets_forward = tf.function(lambda images: self(images, training=False),
                                                  input_signature=[self._batch_spec()], jit_compile=jit)
            self._kerasnets_forward_jit = jit
        return self._kerasnets_forward

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        if not self._uses_fast_path(x, steps, callbacks):
            return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)
        import tensorflow as tf

        spec = self._batch_spec()
        if not spec.is_compatible_with(tf.TensorSpec(x.shape, spec.dtype)):
            raise ValueError(f"x has shape {tuple(x.shape)}; {self.name} takes images of shape "
                             f"{tuple(spec.shape)} (None: any size)")
        if len(x) == 0:
            raise ValueError(f"x holds no images (shape {tuple(x.shape)})")
        batch_size = 32 if batch_size is None else batch_size
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        x = tf.cast(x, spec.dtype) if isinstance(x, tf.Tensor) else np.asarray(x, spec.dtype.as_numpy_dtype)
        forward = self._forward()
        total = -(-len(x) // batch_size)
        progress = keras.utils.Progbar(total, verbose=1 if verbose == "auto" else verbose) if verbose else None
        outputs = []
        for step, start in enumerate(range(0, len(x), batch_size)):
            outputs.append(keras.tree.map_structure(np.asarray, forward(x[start:start + batch_size])))
            if progress is not None:
                progress.update(step + 1)
        return keras.tree.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)


# Keras' legacy HDF5 loader looks custom classes up by their bare class name, not the registered
# "kerasnets>KerasnetsModel", so a whole-model `.h5` save would not load without this.
keras.saving.get_custom_objects().setdefault("KerasnetsModel", KerasnetsModel)


def load_model(path, compile=False, **kwargs):
    """`keras.saving.load_model(path)` for kerasnets' tools: a plain functional model comes back as a
    KerasnetsModel (same layers and weights), so its `predict` is the fast one (with `compile=True`, a
    compiled file comes back as Keras loads it, optimizer and all).

    Trained models are saved as plain functional models (`model.keras` opens
    with Keras alone); loading them here restores the faster predict.
    """
    model = keras.saving.load_model(path, compile=compile, **kwargs)
    if not model.compiled and type(model).__name__ == "Functional" and len(model.inputs) == 1:
        model = KerasnetsModel(model.input, model.output, name=model.name)
    return model
