"""Layers kerasnets adds to models it trains or exports."""

import keras
from keras import ops

# keras.applications' normalisations of RGB pixels in [0, 255] (imagenet_utils.preprocess_input).
_TORCH_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_TORCH_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MODES = ("tf", "torch", "caffe")


@keras.saving.register_keras_serializable(package="kerasnets")
class Preprocess(keras.layers.Layer):
    """Turns RGB pixels in [0, 255] into the input a network was trained on.

    `mode` is keras.applications' name for it: "tf" scales to [-1, 1];
    "torch" standardises with ImageNet's mean and std; "caffe" reorders to BGR
    and subtracts ImageNet's mean. As a layer, the model carries its own
    normalisation: saved, exported or served, it takes raw pixels.
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got mode={mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            return (x - ops.convert_to_tensor(_TORCH_MEAN, self.compute_dtype)) / ops.convert_to_tensor(
                _TORCH_STD, self.compute_dtype)
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_BGR_MEAN, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
