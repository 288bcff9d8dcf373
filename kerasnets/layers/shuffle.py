"""Channel split and channel shuffle (Zhang et al. 2018; Ma et al. 2018, figure 3), from keras.ops only.

Both are layers of their own, so a model keeps named nodes for them and runs
on every Keras backend and in TFLite (reshape, transpose and slices). They are
registered with Keras' serialization under "kerasnets": a `.keras` file that
holds them opens once kerasnets is imported (`kerasnets.load_model` does it).
"""

import keras


@keras.saving.register_keras_serializable(package="kerasnets")
class ChannelSplit(keras.layers.Layer):
    """Splits the channels (last axis) into `parts` equal parts; returns a list."""

    def __init__(self, parts=2, **kwargs):
        super().__init__(**kwargs)
        self.parts = parts

    def call(self, x):
        return keras.ops.split(x, self.parts, axis=-1)

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        return [(*input_shape[:-1], channels // self.parts)] * self.parts

    def get_config(self):
        return {**super().get_config(), "parts": self.parts}


@keras.saving.register_keras_serializable(package="kerasnets")
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet's channel shuffle: channels seen as (groups, channels / groups), transposed, flattened, so
    output channel k * groups + g is input channel g * (channels / groups) + k (torchvision's order)."""

    def __init__(self, groups=2, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups

    def call(self, x):
        shape = keras.ops.shape(x)
        channels = x.shape[-1]
        x = keras.ops.reshape(x, (-1, shape[1], shape[2], self.groups, channels // self.groups))
        x = keras.ops.transpose(x, (0, 1, 2, 4, 3))
        return keras.ops.reshape(x, (-1, shape[1], shape[2], channels))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}
