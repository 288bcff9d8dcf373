"""Atrous convolution as the sum of its taps, each over the part of the grid it reads (keras.ops only).

TensorFlow runs Keras' dilated `Conv2D` by space-to-batch: the zero-padded grid
is cut into rate x rate sub-grids, batched and convolved, every tap at every
position. On the small grids of dense prediction most taps then read padding:
DeepLab v3's rates 6, 12 and 18 on the 16x16 grid of a 256x256 input at output
stride 16 do 2.3, 9 and 11 times the multiplications that read the input.
`AtrousConv2D` keeps `Conv2D`'s arguments, weights and output, but on a grid of
known size computes each of the kernel's taps as a 1x1 convolution over the
window of output positions where that tap reads the input, zero-padded back to
the grid and summed: no tap multiplies padding, and a tap that reads padding
only (a rate at least the grid's side) costs nothing. Where the grid is unknown
(a model open to any size) or the layer strides, it is a plain `Conv2D`.

Registered with Keras' serialization under "kerasnets", as the channel shuffle:
a `.keras` file that holds it opens once kerasnets is imported.
"""

import keras


@keras.saving.register_keras_serializable(package="kerasnets")
class AtrousConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` (same arguments, weights and output) that runs a dilated, stride-1, "same"
    convolution on a grid of known size tap by tap, over the windows where each tap reads the input."""

    def convolution_op(self, inputs, kernel):
        height, width = inputs.shape[1:3]
        if (self.dilation_rate == (1, 1) or self.strides != (1, 1) or self.padding != "same" or self.groups != 1
                or self.data_format != "channels_last" or height is None or width is None):
            return super().convolution_op(inputs, kernel)
        rows = _tap_windows(self.kernel_size[0], self.dilation_rate[0], height)
        columns = _tap_windows(self.kernel_size[1], self.dilation_rate[1], width)
        if not rows or not columns:  # no tap reads the input (an even kernel on a grid of one): Conv2D's zeros
            return super().convolution_op(inputs, kernel)
        total = None
        for i, (shift_y, top, bottom) in rows:
            for j, (shift_x, left, right) in columns:
                window = inputs[:, top + shift_y:bottom + shift_y, left + shift_x:right + shift_x, :]
                part = keras.ops.conv(window, kernel[i:i + 1, j:j + 1], padding="valid", data_format="channels_last")
                if (top, bottom, left, right) != (0, height, 0, width):
                    part = keras.ops.pad(part, [[0, 0], [top, height - bottom], [left, width - right], [0, 0]])
                total = part if total is None else total + part
        return total


def _tap_windows(kernel, rate, size):
    """Along one axis of `size` positions: [(tap, (shift, first, end))] for each tap that reads the input
    somewhere, where output positions first..end-1 read input position + shift. "same" padding puts
    (kernel - 1) * rate // 2 before the grid (the rest after), as TensorFlow and Keras do."""
    before = (kernel - 1) * rate // 2
    windows = []
    for tap in range(kernel):
        shift = tap * rate - before
        first, end = max(0, -shift), min(size, size - shift)
        if first < end:
            windows.append((tap, (shift, first, end)))
    return windows
