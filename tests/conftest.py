"""Test set-up: keep Keras' cache in a temporary directory (no downloads, no user files touched); image folders."""

import os
import tempfile

# Must happen before keras is imported: keras reads KERAS_HOME once.
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="kerasnets-keras-home-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import importlib  # noqa: E402

# kerasnets before TensorFlow, as a user's `kerasnets` command does: it picks TensorFlow's CPU kernels (oneDNN).
importlib.import_module("kerasnets")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from image_folders import write_digits_folder  # noqa: E402

# The longest files start first, so that the two workers (pytest.ini) finish together.
LONGEST_FIRST = ("test_training_readme.py", "test_training.py", "test_training_distributed.py",
                 "test_segmentation_training.py", "test_conformance.py", "test_slim_nets.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file stays


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digits_folder(str(tmp_path_factory.mktemp("digits")))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """Flat ROOT/<label>/ folder: grayscale, RGBA and RGB images of odd sizes, and one corrupt file."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for label, channels in (("cat", 1), ("dog", 4), ("emu", 3)):
        os.makedirs(root / label)
        for i in range(8):
            image = rng.integers(0, 256, (20 + 7 * i, 33 + 3 * i, channels), dtype=np.uint8)
            encoded = tf.io.encode_png(image) if i % 2 else tf.io.encode_jpeg(image[..., :3] if channels == 4
                                                                                else image)
            tf.io.write_file(str(root / label / f"{i}.{'png' if i % 2 else 'jpg'}"), encoded)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "notes.txt").write_text("not a class folder")
    return str(root)
