"""The input layers kerasnets puts in front of the models it trains or exports.

A trained or exported model takes raw RGB pixels in [0, 255] and carries its
own normalisation as its first layer, named `image.Preprocess`. That layer is
one of Keras' built-in layers, so a saved `model.keras` opens with plain Keras
in a process that has never imported kerasnets.
"""

import keras
import numpy as np
from keras import ops

# keras.applications' normalisations of RGB pixels in [0, 255] (imagenet_utils.preprocess_input).
_TORCH_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_TORCH_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
KERAS_APPLICATIONS_MODES = ("tf", "torch", "caffe")
# TF-slim's vgg_preprocessing (its VGG and ResNet v1 checkpoints): ImageNet's mean subtracted in RGB, no scaling.
_SLIM_RGB_MEAN = (123.68, 116.78, 103.94)
MODES = KERAS_APPLICATIONS_MODES + ("rgb_mean",)
PREPROCESS_NAME = "image.Preprocess"


def preprocessing(mode, name=PREPROCESS_NAME):
    """keras.applications' `preprocess_input(x, mode)` as a built-in Keras layer (call it on raw pixels).

    "tf" scales to [-1, 1] and "torch" standardises with ImageNet's mean and
    std: both `Rescaling` (per channel for torch), as is "rgb_mean" (slim's
    VGG preprocessing, the mean subtracted in RGB). "caffe" reorders RGB to BGR
    and subtracts ImageNet's mean: a frozen 1x1 `Conv2D` whose kernel is the
    channel permutation and whose bias is minus the mean (built-in layers have
    no channel flip; the products are by 0 and 1, so the result is exact).
    """
    if mode not in MODES:
        raise ValueError(f"preprocessing mode must be one of {MODES}, got {mode!r}")
    if mode == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=name)
    if mode == "torch":
        std = np.asarray(_TORCH_STD)
        return keras.layers.Rescaling((1.0 / std).tolist(), offset=(-np.asarray(_TORCH_MEAN) / std).tolist(),
                                      name=name)
    if mode == "rgb_mean":
        return keras.layers.Rescaling(1.0, offset=[-m for m in _SLIM_RGB_MEAN], name=name)
    flip = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)
    return keras.layers.Conv2D(3, 1, name=name, trainable=False,
                               kernel_initializer=keras.initializers.Constant(flip.tolist()),
                               bias_initializer=keras.initializers.Constant((-np.asarray(_CAFFE_BGR_MEAN)).tolist()))


def preprocess_input(x, mode, data_format=None):
    """The normalisation `mode` (one of MODES) of RGB pixels in [0, 255], on arrays or tensors: keras.applications'
    `imagenet_utils.preprocess_input` for its modes, slim's mean subtraction for "rgb_mean". Unlike
    keras.applications', it leaves a float NumPy input as it was (that one normalises it in place)."""
    if mode not in MODES:
        raise ValueError(f"preprocessing mode must be one of {MODES}, got {mode!r}")
    if mode in KERAS_APPLICATIONS_MODES:
        if isinstance(x, np.ndarray):
            x = x.astype(keras.config.floatx())  # a copy: the caller's pixels stay pixels
        return keras.applications.imagenet_utils.preprocess_input(x, data_format=data_format, mode=mode)
    channels_first = (data_format or keras.config.image_data_format()) == "channels_first"
    mean = np.asarray(_SLIM_RGB_MEAN, "float32").reshape((3, 1, 1) if channels_first else (3,))
    if isinstance(x, np.ndarray):
        return x.astype(keras.config.floatx(), copy=False) - mean
    return ops.cast(x, keras.config.floatx()) - mean


def raw_pixel_input(size, mode):
    """`(inputs, x)`: a `size`x`size` RGB input named `image` and its normalised tensor."""
    inputs = keras.Input((size, size, 3), name="image")
    return inputs, preprocessing(mode)(inputs)


def takes_raw_pixels(model):
    """Whether `model` normalises its own input (a kerasnets-trained or -exported model)."""
    return any(layer.name == PREPROCESS_NAME or isinstance(layer, Preprocess) for layer in model.layers)


@keras.saving.register_keras_serializable(package="kerasnets")
class Preprocess(keras.layers.Layer):
    """The normalisation layer of models saved by kerasnets 0.1 (kept so their files still load).

    New models use `preprocessing(mode)`, a built-in layer.
    """

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in KERAS_APPLICATIONS_MODES:
            raise ValueError(f"mode must be one of {KERAS_APPLICATIONS_MODES}, got mode={mode!r}")
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


keras.saving.get_custom_objects().setdefault("Preprocess", Preprocess)  # for Keras' legacy .h5 loader
