"""The shared units every family is built from, and the input normalisation layer.

- `blocks`: convolution with normalisation and activation (`same`, `valid` or
  symmetric padding), separable convolutions, pooling, a family's shared
  hyper-parameters (`ConvSettings`, slim's arg_scope);
- `residual`: ResNet's units (basic, bottleneck v1/v2), with `groups` and an
  attention hook;
- `heads`: the classifier and global pooling;
- `atrous`: an atrous convolution computed tap by tap on small grids (DeepLab's
  ASPP);
- `preprocessing`: keras.applications' input normalisations as built-in layers.
"""

from kerasnets.layers.preprocessing import (  # noqa: F401  (also registers the legacy Preprocess class)
    MODES, PREPROCESS_NAME, Preprocess, preprocessing, raw_pixel_input, takes_raw_pixels)
