"""Small real image folders for tests: scikit-learn's bundled digits (1,797 8x8 scans) and its two photos."""

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


def digits_on_photos(count, size=64, classes=2, seed=0, split="train", test_fraction=0.2, digits_per_image=(1, 3)):
    """`count` (image, mask) pairs: scikit-learn's digits pasted onto random crops of its two photos.

    Each digit is scaled to a random size (a quarter to a half of the side), given a random colour and pasted at a
    random place; its stroke pixels (scan value >= 8 of 16) are labelled 1 (`classes=2`: stroke vs photo) or
    1 + digit (`classes=11`); the photo is 0. Train and test draw on disjoint digit scans (the split of
    `write_digits_folder`). Returns uint8 arrays (count, size, size, 3) and (count, size, size).
    """
    from sklearn.datasets import load_digits, load_sample_images

    if classes not in (2, 11):
        raise ValueError(f"classes must be 2 or 11, got {classes!r}")
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))
    cut = int(len(order) * test_fraction)
    pool = order[:cut] if split == "test" else order[cut:]
    photos = load_sample_images().images
    rng = np.random.default_rng(seed + (1 if split == "test" else 0) * 7919)
    images = np.empty((count, size, size, 3), "uint8")
    masks = np.zeros((count, size, size), "uint8")
    for n in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(size, min(photo.shape[:2]) + 1))  # a crop of `side` pixels, scaled to `size`
        top, left = rng.integers(photo.shape[0] - side + 1), rng.integers(photo.shape[1] - side + 1)
        crop = photo[top:top + side, left:left + side]
        image = tf.image.resize(crop, (size, size), antialias=True).numpy()
        for _ in range(rng.integers(digits_per_image[0], digits_per_image[1] + 1)):
            index = pool[rng.integers(len(pool))]
            glyph_side = int(rng.integers(size // 4, size // 2 + 1))
            glyph = tf.image.resize(digits.images[index][..., None], (glyph_side, glyph_side),
                                    method="nearest").numpy()[..., 0]
            stroke = glyph >= 8
            y, x = rng.integers(size - glyph_side + 1), rng.integers(size - glyph_side + 1)
            region = image[y:y + glyph_side, x:x + glyph_side]
            region[stroke] = rng.integers(0, 256, 3)
            masks[n, y:y + glyph_side, x:x + glyph_side][stroke] = 1 if classes == 2 else 1 + digits.target[index]
        images[n] = np.clip(np.round(image), 0, 255).astype("uint8")
    return images, masks


def write_segmentation_folder(root, images, masks, split):
    """ROOT/SPLIT/images/NAME.(jpg|png) and ROOT/SPLIT/masks/NAME.png, the layout `kerasnets train` reads for
    segmentation (every other image a JPEG, as users' folders mix them)."""
    for folder in ("images", "masks"):
        os.makedirs(os.path.join(root, split, folder), exist_ok=True)
    for n, (image, mask) in enumerate(zip(images, masks)):
        name = f"{split}_{n:04d}"
        encoded = tf.io.encode_jpeg(image, quality=95) if n % 2 else tf.io.encode_png(image)
        tf.io.write_file(os.path.join(root, split, "images", f"{name}.{'jpg' if n % 2 else 'png'}"), encoded)
        tf.io.write_file(os.path.join(root, split, "masks", f"{name}.png"), tf.io.encode_png(mask[..., None]))
    return root


def write_digits_on_photos(root, classes=2, train=400, test=100, size=64, seed=0):
    """The digits-on-photos segmentation set in the ROOT/{train,test}/{images,masks} layout."""
    for split, count in (("train", train), ("test", test)):
        images, masks = digits_on_photos(count, size, classes, seed, split)
        write_segmentation_folder(root, images, masks, split)
    return root


def prepare_digits_on_photos_as_tfds_pets(data_dir, train=40, test=16, size=64, seed=0):
    """tfds' own `oxford_iiit_pet` builder, prepared offline in `data_dir` from digits-on-photos.

    The strokes are the "pet" (trimap value 1), the photo the background (2) and a one-pixel ring around the
    strokes the border (3), written as the real archives hold them (images/NAME.jpg, annotations/trimaps/NAME.png,
    annotations/trainval.txt and test.txt: `NAME class species breed`); only the download is replaced, so tfds'
    own example generator writes the records, in the set's real version. Returns data_dir and the trimaps
    {split: (count, size, size) uint8} as written.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.datasets.oxford_iiit_pet import oxford_iiit_pet_dataset_builder as pets

    source = os.path.join(str(data_dir), "downloads_offline")
    for folder in ("images", "annotations/trimaps"):
        os.makedirs(os.path.join(source, folder), exist_ok=True)
    trimaps = {}
    for split, count, listing in (("train", train, "trainval.txt"), ("test", test, "test.txt")):
        images, masks = digits_on_photos(count, size, 2, seed, split)
        stroke = masks > 0
        grown = np.pad(stroke, ((0, 0), (1, 1), (1, 1)))
        grown = grown[:, 1:-1, 1:-1] | grown[:, :-2, 1:-1] | grown[:, 2:, 1:-1] | grown[:, 1:-1, :-2] | grown[:, 1:-1, 2:]
        trimaps[split] = np.where(stroke, 1, np.where(grown, 3, 2)).astype("uint8")
        lines = []
        for n in range(count):
            name = f"{split}_digits_{n}"
            tf.io.write_file(os.path.join(source, "images", f"{name}.jpg"), tf.io.encode_jpeg(images[n], quality=95))
            tf.io.write_file(os.path.join(source, "annotations", "trimaps", f"{name}.png"),
                             tf.io.encode_png(trimaps[split][n][..., None]))
            lines.append(f"{name} {1 + n % 37} {1 + n % 2} 1\n")
        with open(os.path.join(source, "annotations", listing), "w") as f:
            f.writelines(lines)

    class OfflinePets(pets.Builder, skip_registration=True):
        name = "oxford_iiit_pet"
        __module__ = pets.Builder.__module__  # tfds reads the set's metadata files from its builder's package

        def _split_generators(self, dl_manager):
            annotations = os.path.join(source, "annotations")
            return [tfds.core.SplitGenerator(name=split, gen_kwargs={
                "images_dir_path": os.path.join(source, "images"), "annotations_dir_path": annotations,
                "images_list_file": os.path.join(annotations, listing)})
                for split, listing in (("train", "trainval.txt"), ("test", "test.txt"))]

    OfflinePets(data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(data_dir), trimaps
