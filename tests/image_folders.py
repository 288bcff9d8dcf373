"""Small real image folders for tests: scikit-learn's bundled digits (1,797 8x8 scans)."""

import os

import numpy as np
import tensorflow as tf


def write_digits_folder(root, test_fraction=0.2, seed=0, scale=1, digits_kept=range(10), shuffle_labels=False):
    """ROOT/train/<digit>/*.png and ROOT/test/<digit>/*.png (grayscale PNGs, upscaled by `scale`).

    `digits_kept`: the classes written (the split of each image is the same whichever are kept).
    `shuffle_labels`: each image goes to a random class folder (a data set nothing can learn).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype("uint8")
    order = np.random.default_rng(seed).permutation(len(images))
    targets = np.random.default_rng(seed + 1).permutation(digits.target) if shuffle_labels else digits.target
    cut = int(len(images) * test_fraction)
    for rank, index in enumerate(order):
        if targets[index] not in digits_kept:
            continue
        split = "test" if rank < cut else "train"
        folder = os.path.join(root, split, str(targets[index]))
        os.makedirs(folder, exist_ok=True)
        image = np.kron(images[index], np.ones((scale, scale), "uint8"))[..., None]
        tf.io.write_file(os.path.join(folder, f"{index:04d}.png"), tf.io.encode_png(image))
    return root


def prepare_digits_as_tfds_mnist(data_dir, test_fraction=0.2, seed=0):
    """tfds' own `mnist` builder, prepared offline in `data_dir` from the digits (upscaled to 28x28).

    The class is tfds' MNIST with only the download replaced, so the files are mnist's real
    layout and version; a process with TFDS_DATA_DIR=data_dir loads `tfds:mnist` through tfds'
    registered builder, as a user's would, without a network.
    """
    import tensorflow_datasets as tfds
    from sklearn.datasets import load_digits
    from tensorflow_datasets.image_classification import mnist

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype("uint8")
    images = tf.image.resize(images[..., None], (28, 28), method="nearest").numpy().astype("uint8")
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(len(images) * test_fraction)
    splits = {"test": order[:cut], "train": order[cut:]}

    class OfflineMNIST(mnist.MNIST, skip_registration=True):
        name = "mnist"

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(indices) for split, indices in splits.items()}

        def _generate_examples(self, indices):
            for index in indices:
                yield int(index), {"image": images[index], "label": int(digits.target[index])}

    OfflineMNIST(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(data_dir)
