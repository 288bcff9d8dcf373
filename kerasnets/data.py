"""Input pipelines for training and evaluation.

Sources:
  * `tfds:NAME[:SPLIT]` -- a tensorflow-datasets set, loaded from its data_dir
    as tfds does (SPLIT is a tfds split spec for training, default "train";
    evaluation uses "test", else "validation", else 10 % of the training split);
  * `ROOT` with `ROOT/train/<label>/*` and `ROOT/test/<label>/*` (or `val`,
    `validation`): tfds' ImageFolder layout;
  * `ROOT/<label>/*`: one folder per class, split into training and
    validation with a seeded shuffle.

Images of any size and of 1 to 4 channels are decoded to RGB. Unreadable
files are found once, up front, with the same decoder the pipeline uses,
skipped and counted; the pipeline also drops any that fail later
(`ignore_errors`), so a bad file never ends an epoch.

Training batches get Inception's augmentation (random resized crop, flip,
optional colour jitter), evaluation batches a 0.875 central crop; both are
float32 RGB in [0, 255] -- the model's own normalisation is its first layer.

Segmentation (`load_segmentation`) reads `ROOT/{train,test}/images/NAME.*`
paired with `ROOT/{train,test}/masks/NAME.png`, one class index per pixel and
255 for pixels to ignore (PASCAL VOC's convention). The crop and flip are
drawn once per pair and applied to image and mask alike (the mask resized
nearest-neighbour, so it keeps its class indices); evaluation resizes the
whole image. A palette PNG (PASCAL VOC's SegmentationClass files) is read as
its palette indices, not its colours. `tfds:oxford_iiit_pet` is read from
tensorflow-datasets (its trimaps as classes pet, background, border).
"""

import dataclasses
import os
import random

import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
EVAL_SPLIT_NAMES = ("test", "val", "validation")
CENTRAL_FRACTION = 0.875


@dataclasses.dataclass
class Augmentation:
    """Inception-style training augmentation (Szegedy et al. 2015; slim's inception_preprocessing)."""

    min_area: float = 0.08
    aspect_ratios: tuple = (3 / 4, 4 / 3)
    flip: bool = True
    color_jitter: bool = False


@dataclasses.dataclass
class Data:
    train: tf.data.Dataset
    eval: tf.data.Dataset
    class_names: list
    train_count: int
    eval_count: int
    skipped: list  # paths (or tfds record numbers) that could not be decoded
    eval_name: str


def _list_class_folder(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    files, labels = [], []
    for index, name in enumerate(classes):
        for dirpath, _, filenames in os.walk(os.path.join(root, name)):
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(dirpath, filename))
                    labels.append(index)
    return classes, files, labels


def _decode(contents):
    return tf.io.decode_image(contents, channels=3, expand_animations=False)


def readable(files):
    """Indices of `files` that decode, found with the pipeline's own decoder, in parallel."""
    indices = tf.data.Dataset.from_tensor_slices((tf.range(len(files)), files))
    indices = indices.map(lambda i, path: (i, tf.shape(_decode(tf.io.read_file(path)))[0]),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    ok = indices.ignore_errors().map(lambda i, _: i)
    return sorted(int(i) for i in ok.as_numpy_iterator())


def _folder_source(root, validation_fraction, seed):
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--data {root!r}: no such directory (expected ROOT/<label>/ or ROOT/train/<label>/)")
    subdirs = {d.lower(): d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))}
    eval_dir = next((subdirs[n] for n in EVAL_SPLIT_NAMES if n in subdirs), None)
    if "train" in subdirs:
        classes, train_files, train_labels = _list_class_folder(os.path.join(root, subdirs["train"]))
        if eval_dir is None:
            raise ValueError(f"--data {root!r} has train/ but no test/, val/ or validation/ folder")
        eval_classes, eval_files, eval_labels = _list_class_folder(os.path.join(root, eval_dir))
        if eval_classes != classes:
            raise ValueError(f"--data {root!r}: {eval_dir}/ has classes {eval_classes}, train/ has {classes}")
        eval_name = eval_dir
    else:
        classes, files, labels = _list_class_folder(root)
        pairs = list(zip(files, labels))
        random.Random(seed).shuffle(pairs)
        cut = max(1, int(round(len(pairs) * validation_fraction))) if len(pairs) > 1 else 0
        eval_pairs, train_pairs = pairs[:cut], pairs[cut:]
        train_files, train_labels = [p[0] for p in train_pairs], [p[1] for p in train_pairs]
        eval_files, eval_labels = [p[0] for p in eval_pairs], [p[1] for p in eval_pairs]
        eval_name = f"validation ({validation_fraction:.0%} of {root}, seed {seed})"
    if len(classes) < 2:
        raise ValueError(f"--data {root!r}: found {len(classes)} class folder(s) {classes}; need at least 2 "
                         "(ROOT/<label>/image.jpg or ROOT/train/<label>/image.jpg)")
    if not train_files:
        raise ValueError(f"--data {root!r}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders")
    skipped = []
    splits = []
    for files, labels in ((train_files, train_labels), (eval_files, eval_labels)):
        good = readable(files) if files else []
        skipped += [files[i] for i in sorted(set(range(len(files))) - set(good))]
        files = [files[i] for i in good]
        labels = [labels[i] for i in good]
        images = tf.data.Dataset.from_tensor_slices((files, labels)).map(
            lambda path, label: (_decode(tf.io.read_file(path)), label), num_parallel_calls=tf.data.AUTOTUNE)
        splits.append((images.ignore_errors(), len(files)))
    return classes, splits, skipped, eval_name


def _tfds_name(spec):
    """(NAME, SPLIT or "train") of `tfds:NAME[:SPLIT]`."""
    name, _, train_split = spec.partition(":")[2].partition(":")
    return name, train_split or "train"


def _prepared_tfds_builder(spec):
    """tfds' builder of `tfds:NAME[:SPLIT]`, downloaded and prepared into its data_dir as tfds does."""
    import tensorflow_datasets as tfds

    name, _ = _tfds_name(spec)
    try:
        builder = tfds.builder(name)
    except Exception as e:  # tfds raises DatasetNotFoundError (and others for bad configs)
        raise ValueError(f"--data {spec!r}: tensorflow-datasets has no dataset {name!r} ({type(e).__name__})") from None
    builder.download_and_prepare()
    return builder


def _tfds_source(spec, validation_fraction):
    _, train_split = _tfds_name(spec)
    builder = _prepared_tfds_builder(spec)
    info = builder.info
    label_feature = info.features["label"]
    classes = list(label_feature.names)
    # (A mocked dataset -- tfds.testing.mock_data -- lists no splits: assume the usual two.)
    available = list(info.splits.keys()) or ["train", "test"]
    eval_split = next((s for s in EVAL_SPLIT_NAMES if s in available), None)
    if eval_split is None:
        percent = int(round(100 * validation_fraction))
        train_split, eval_split = f"{train_split}[{percent}%:]", f"{train_split}[:{percent}%]"
    splits = []
    for split in (train_split, eval_split):
        ds = builder.as_dataset(split=split, as_supervised=True)
        try:
            count = info.splits[split].num_examples
        except KeyError:
            count = int(ds.cardinality())
            count = count if count >= 0 else sum(1 for _ in ds)
        ds = ds.map(lambda image, label: (_as_rgb(image), label))
        splits.append((ds, count))
    return classes, splits, [], eval_split


def _as_rgb(image):
    image = tf.convert_to_tensor(image)
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 4:
        return image[..., :3]
    return image


def random_resized_crop(image, size, augmentation):
    """A random crop covering `min_area`..1 of the image with aspect ratio in range, resized to `size`."""
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), min_object_covered=0.0,
        aspect_ratio_range=augmentation.aspect_ratios, area_range=(augmentation.min_area, 1.0), max_attempts=20,
        use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, crop_size)
    return tf.image.resize(image, (size, size))


def train_transform(image, size, augmentation):
    image = random_resized_crop(image, size, augmentation)
    if augmentation.flip:
        image = tf.image.random_flip_left_right(image)
    if augmentation.color_jitter:
        image = tf.image.random_brightness(image, 32.0)
        image = tf.image.random_saturation(image, 0.5, 1.5)
        image = tf.image.random_contrast(image, 0.5, 1.5)
    return tf.clip_by_value(image, 0.0, 255.0)


def eval_transform(image, size):
    image = tf.image.central_crop(tf.image.convert_image_dtype(image, tf.float32), CENTRAL_FRACTION)
    return tf.image.resize(image, (size, size)) * 255.0


IGNORE_LABEL = 255


def _list_pairs(split_root):
    """(image paths, mask paths) of ROOT/SPLIT, paired by file name; an error naming what has no partner."""
    folders = [os.path.join(split_root, name) for name in ("images", "masks")]
    for folder in folders:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"--data: no folder {folder!r} (segmentation data is ROOT/{{train,test}}/images/"
                                    "NAME.jpg|png with ROOT/{train,test}/masks/NAME.png)")
    images = {os.path.splitext(f)[0]: f for f in sorted(os.listdir(folders[0])) if f.lower().endswith(IMAGE_EXTENSIONS)}
    masks = {os.path.splitext(f)[0]: f for f in sorted(os.listdir(folders[1])) if f.lower().endswith(".png")}
    unpaired = sorted(set(images) ^ set(masks))
    if unpaired:
        where = [f"{n} ({'no mask' if n in images else 'no image'})" for n in unpaired[:3]]
        raise ValueError(f"--data {split_root!r}: {len(unpaired)} image(s) and mask(s) without a partner, e.g. "
                         f"{', '.join(where)}; each images/NAME.* needs masks/NAME.png")
    names = sorted(images)
    return ([os.path.join(folders[0], images[n]) for n in names], [os.path.join(folders[1], masks[n]) for n in names])


def _palette_indices(contents):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(contents)), np.uint8)[..., None]


def decode_mask(contents):
    """A mask PNG's class indices: a grayscale PNG's values, a palette PNG's indices (TensorFlow's decoder would
    give the palette's colours)."""
    palette = tf.equal(tf.strings.substr(contents, 25, 1), b"\x03")  # IHDR colour type 3: indexed colour

    def indices():
        mask = tf.numpy_function(_palette_indices, [contents], tf.uint8, stateful=False)
        return tf.ensure_shape(mask, (None, None, 1))

    return tf.cond(palette, indices, lambda: tf.io.decode_png(contents, channels=1))


def _decode_pair(image_path, mask_path):
    image = _decode(tf.io.read_file(image_path))
    mask = decode_mask(tf.io.read_file(mask_path))
    tf.debugging.assert_equal(tf.shape(image)[:2], tf.shape(mask)[:2], message="image and mask sizes differ")
    return image, mask


def _scan_pairs(images, masks):
    """The readable pairs (same sizes) and the largest class index among them (255, ignore, left out)."""
    pairs = tf.data.Dataset.from_tensor_slices((tf.range(len(images)), images, masks))

    def largest(i, image_path, mask_path):
        _, mask = _decode_pair(image_path, mask_path)
        labels = tf.boolean_mask(mask, mask != IGNORE_LABEL)
        return i, tf.reduce_max(tf.concat([tf.cast(labels, tf.int32), [0]], 0))

    found = pairs.map(largest, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).ignore_errors()
    found = list(found.as_numpy_iterator())
    return sorted(int(i) for i, _ in found), max((int(m) for _, m in found), default=0)


def joint_random_crop(image, mask, size, augmentation):
    """One random crop and flip, applied to the image (bilinear) and its mask (nearest) alike."""
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), min_object_covered=0.0,
        aspect_ratio_range=augmentation.aspect_ratios, area_range=(augmentation.min_area, 1.0), max_attempts=20,
        use_image_if_no_bounding_boxes=True)
    image = tf.image.resize(tf.slice(image, begin, crop_size), (size, size))
    mask = tf.image.resize(tf.slice(mask, begin, crop_size), (size, size), method="nearest")
    if augmentation.flip:
        flip = tf.random.uniform(()) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
        mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    return tf.clip_by_value(image, 0.0, 255.0), mask[..., 0]


def segmentation_eval_transform(image, mask, size):
    """The whole image resized to `size` (bilinear), its mask alike (nearest)."""
    image = tf.image.resize(tf.cast(image, tf.float32), (size, size))
    return image, tf.image.resize(mask, (size, size), method="nearest")[..., 0]


def load_segmentation(source, image_size, batch_size, augmentation=None, seed=0, cache_bytes=2 * 1024**3,
                      drop_remainder=False):
    """Training and evaluation datasets of `(image, mask)` batches: float32 RGB in [0, 255], (size, size) uint8
    class indices (255: ignored). Class names come from ROOT/labels.txt (one per line) when there is one, else
    "0".."K-1" for the largest index K-1 found in the masks."""
    augmentation = augmentation or Augmentation()
    if isinstance(source, str) and source.startswith("tfds:"):
        class_names, splits, eval_dir = _tfds_segmentation(source)
        return _segmentation_data(splits, class_names, eval_dir, [], image_size, batch_size, augmentation, seed,
                                  cache_bytes, drop_remainder)
    if not isinstance(source, str) or not os.path.isdir(source):
        raise FileNotFoundError(f"--data {source!r}: no such directory (segmentation data is ROOT/{{train,test}}/"
                                "images/NAME.jpg|png with ROOT/{train,test}/masks/NAME.png)")
    subdirs = {d.lower(): d for d in os.listdir(source) if os.path.isdir(os.path.join(source, d))}
    eval_dir = next((subdirs[n] for n in EVAL_SPLIT_NAMES if n in subdirs), None)
    if "train" not in subdirs or eval_dir is None:
        raise ValueError(f"--data {source!r}: segmentation data needs train/ and test/ (or val/) folders, each with "
                         f"images/ and masks/; found {sorted(subdirs)}")
    splits, skipped, largest = [], [], 0
    for split in (subdirs["train"], eval_dir):
        images, masks = _list_pairs(os.path.join(source, split))
        if not images:
            raise ValueError(f"--data {source!r}: {split}/images/ holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        good, split_largest = _scan_pairs(images, masks)
        if not good:
            raise ValueError(f"--data {source!r}: none of the {len(images)} image/mask pairs in {split}/ decode with "
                             "the image and its mask of one size, e.g. " + images[0])
        largest = max(largest, split_largest)
        skipped += [images[i] for i in sorted(set(range(len(images))) - set(good))]
        pairs = tf.data.Dataset.from_tensor_slices(([images[i] for i in good], [masks[i] for i in good]))
        splits.append((pairs.map(_decode_pair, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(), len(good)))
    labels_file = os.path.join(source, "labels.txt")
    if os.path.exists(labels_file):
        class_names = [line.strip() for line in open(labels_file, encoding="utf8") if line.strip()]
        if largest >= len(class_names):
            raise ValueError(f"--data {source!r}: the masks hold class {largest}, but labels.txt names "
                             f"{len(class_names)} classes (0..{len(class_names) - 1})")
    else:
        class_names = [str(i) for i in range(max(largest + 1, 2))]
    return _segmentation_data(splits, class_names, eval_dir, skipped, image_size, batch_size, augmentation, seed,
                              cache_bytes, drop_remainder)


def _segmentation_data(splits, class_names, eval_name, skipped, image_size, batch_size, augmentation, seed,
                       cache_bytes, drop_remainder):
    (train, train_count), (evaluation, eval_count) = splits
    train, evaluation = _pipelines(
        train, train_count, lambda image, mask: joint_random_crop(image, mask, image_size, augmentation),
        evaluation, eval_count, lambda image, mask: segmentation_eval_transform(image, mask, image_size),
        image_size, batch_size, seed, cache_bytes, drop_remainder)
    return Data(train, evaluation, class_names, train_count, eval_count, skipped, eval_name)


# tensorflow-datasets sets with per-pixel masks: their mask feature, class names, and the value of class 0.
TFDS_MASKS = {
    # The Oxford-IIIT Pet trimaps: 1 pet, 2 background, 3 the border between them (Parkhi et al. 2012).
    "oxford_iiit_pet": ("segmentation_mask", ("pet", "background", "border"), 1),
}


def _tfds_segmentation(spec):
    """(class names, [(train (image, mask) pairs, count), (evaluation pairs, count)], evaluation split) of a
    tensorflow-datasets set in TFDS_MASKS, from its data_dir as tfds loads it."""
    name, train_split = _tfds_name(spec)
    base = name.split("/")[0]
    if base not in TFDS_MASKS:
        why = (" (tensorflow-datasets' voc holds boxes, not masks: write VOC's JPEGImages and SegmentationClass "
               "PNGs as ROOT/{train,test}/images and masks, which reads their palette indices)" if base == "voc"
               else "")
        raise ValueError(f"--data {spec!r}: segmentation reads the tensorflow-datasets sets with masks "
                         f"{sorted(TFDS_MASKS)}, or a folder ROOT/{{train,test}}/{{images,masks}}{why}")
    feature, class_names, first = TFDS_MASKS[base]
    builder = _prepared_tfds_builder(spec)
    splits = []
    for split in (train_split, "test"):
        pairs = builder.as_dataset(split=split).map(
            lambda example: (_as_rgb(example["image"]), tf.cast(tf.cast(example[feature], tf.int32) - first, tf.uint8)),
            num_parallel_calls=tf.data.AUTOTUNE)
        splits.append((pairs, builder.info.splits[split].num_examples))
    return list(class_names), splits, "test"


def _pipelines(train, train_count, train_map, evaluation, eval_count, eval_map, image_size, batch_size, seed,
               cache_bytes, drop_remainder):
    """Decoded examples -> shuffled, augmented training batches and evaluation batches (their counts asserted)."""
    # Decoded images are cached when they fit (small sets: every epoch after the first is free).
    if train_count * 256 * 256 * 4 <= cache_bytes:
        train = train.cache()
    train = train.shuffle(min(train_count, 10_000), seed=seed, reshuffle_each_iteration=True)
    train = train.map(train_map, num_parallel_calls=tf.data.AUTOTUNE)
    evaluation = evaluation.map(eval_map, num_parallel_calls=tf.data.AUTOTUNE)
    if eval_count * image_size * image_size * 16 <= cache_bytes:  # float32 RGB and a label or mask
        evaluation = evaluation.cache()
    if drop_remainder and train_count < batch_size:
        raise ValueError(f"--batch-size {batch_size} is larger than the {train_count} training images")
    # The batch counts are known (unreadable files were removed up front); saying so lets Keras end each epoch
    # on its count instead of running the iterator dry ("Your input ran out of data").
    train_batches = train_count // batch_size if drop_remainder else -(-train_count // batch_size)
    train = train.batch(batch_size, drop_remainder=drop_remainder)
    train = train.apply(tf.data.experimental.assert_cardinality(train_batches)).prefetch(tf.data.AUTOTUNE)
    evaluation = evaluation.batch(batch_size).apply(tf.data.experimental.assert_cardinality(-(-eval_count // batch_size)))
    return train, evaluation.prefetch(tf.data.AUTOTUNE)


def load(source, image_size, batch_size, augmentation=None, validation_fraction=0.2, seed=0,
         cache_bytes=2 * 1024**3, drop_remainder=False):
    """Training and evaluation datasets of `(image, label)` batches, plus what was found.

    `drop_remainder` drops the last, smaller training batch (several replicas
    need equal per-replica shapes).
    """
    augmentation = augmentation or Augmentation()
    if not isinstance(source, str) or not source:
        raise ValueError(f"--data must be 'tfds:NAME[:SPLIT]' or a directory, got {source!r}")
    if source.startswith("tfds:"):
        classes, splits, skipped, eval_name = _tfds_source(source, validation_fraction)
    else:
        classes, splits, skipped, eval_name = _folder_source(source, validation_fraction, seed)
    (train, train_count), (evaluation, eval_count) = splits
    train, evaluation = _pipelines(
        train, train_count, lambda image, label: (train_transform(image, image_size, augmentation), label),
        evaluation, eval_count, lambda image, label: (eval_transform(image, image_size), label),
        image_size, batch_size, seed, cache_bytes, drop_remainder)
    return Data(train, evaluation, classes, train_count, eval_count, skipped, eval_name)
