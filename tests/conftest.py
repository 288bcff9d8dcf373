"""Test set-up: keep Keras' cache in a temporary directory (no downloads, no user files touched)."""

import os
import tempfile

# Must happen before keras is imported: keras reads KERAS_HOME once.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="kerasnets-keras-home-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
