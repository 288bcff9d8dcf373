"""kerasnets: classic CNN architectures for Keras 3, with TF-slim's endpoints and real weight loading."""

__version__ = "0.1.0"

from kerasnets.registry import create_model, get_config, list_models  # noqa: F401
from kerasnets.common import endpoints, feature_extractor  # noqa: F401
from kerasnets import inception_v3 as _inception_v3_module
from kerasnets.inception_v3 import inception_v3  # noqa: F401
from kerasnets.xception import xception  # noqa: F401
from kerasnets.resnet import (  # noqa: F401
    resnet18, resnet34, resnet50, resnet101, resnet152, resnet50_v2, resnet101_v2, resnet152_v2)
from kerasnets.nin import nin  # noqa: F401

# keras.applications style: Inception v3's; other models' via get_config(name).preprocess.
preprocess_input = _inception_v3_module.preprocess_input
decode_predictions = _inception_v3_module.decode_predictions

from kerasnets import analysis, data, export, training  # noqa: E402,F401
from kerasnets.model import KerasnetsModel  # noqa: E402,F401
from kerasnets import precision, recipes  # noqa: E402,F401
from kerasnets.precision import with_precision  # noqa: E402,F401
