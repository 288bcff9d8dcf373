"""kerasnets: classic CNN architectures for Keras 3, with TF-slim's endpoints and real weight loading."""

__version__ = "0.1.0"

from kerasnets.registry import create_model, get_config, list_models  # noqa: F401
from kerasnets.common import endpoints, feature_extractor  # noqa: F401
from kerasnets import inception_v3 as _inception_v3_module
from kerasnets.inception_v3 import inception_v3  # noqa: F401

preprocess_input = _inception_v3_module.preprocess_input
decode_predictions = _inception_v3_module.decode_predictions
