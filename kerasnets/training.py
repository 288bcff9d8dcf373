"""Training through `model.fit`: from scratch or by transfer learning.

`train()` is the Python API; `kerasnets train` calls it. A run writes, in
its output directory: `model.keras`, `labels.txt`, `metrics.json`,
`history.csv`, `training_curves.png`, TensorBoard logs (`logs/`), `run.json`
(the run's settings) and, while it runs, `backup/` (Keras' BackupAndRestore),
from which `resume=True` continues a killed run at its last completed epoch.
Every file is written to a temporary name and renamed, so a run killed at any
moment leaves the previous version of each file intact.

Batch size is global: with several devices or workers, each gets
`batch_size / replicas` images per step.
"""

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import time
import zipfile

import keras
import numpy as np
import tensorflow as tf

from kerasnets import distributed, features, graph
from kerasnets import data as data_lib
from kerasnets import layers as kn_layers
from kerasnets import precision as precision_lib
from kerasnets import recipes
from kerasnets import registry, segmentation
from kerasnets.output import atomic_write, say
from kerasnets.model import functional
from kerasnets.options import DISTRIBUTIONS

HEAD = ("PreLogits", "Logits", "Predictions")


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite; the run stopped and its last good backup was kept."""


def make_strategy(mode):
    if mode not in DISTRIBUTIONS:
        raise ValueError(f"distribute must be one of {list(DISTRIBUTIONS)}, got {mode!r}")
    if mode == "auto":
        if "TF_CONFIG" in os.environ:
            mode = "multi-worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            mode = "mirrored"
        else:
            mode = "off"
    if mode == "mirrored":
        return tf.distribute.MirroredStrategy()
    if mode == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def saved_input_size(path):
    """The input height of the model in a `.keras` archive (None: any), read from its config.json, no weights loaded."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))["config"]
        first = config["input_layers"]
        name = first[0] if isinstance(first[0], str) else first[0][0]
        shape = next(layer["config"]["batch_shape"] for layer in config["layers"] if layer["config"]["name"] == name)
    except (zipfile.BadZipFile, KeyError, IndexError, StopIteration, ValueError) as error:
        raise ValueError(f"MODEL {path!r} is not a functional model saved by Keras 3 (.keras archive): {error}") from None
    return shape[1]


def build_model(model, classes, image_size, weights=None, dropout_rate=0.2, model_args=None):
    """The network to train: raw RGB [0, 255] in (normalisation as its first layer), `classes` out.

    From scratch the registry's own classifier is kept; with `weights` the
    pretrained backbone gets a new `PreLogits`/`Logits`/`Predictions` head.
    """
    if isinstance(model, str) and model.endswith(".keras"):
        if not os.path.exists(model):
            raise FileNotFoundError(f"MODEL {model!r}: no such .keras file")
        loaded = keras.saving.load_model(model)
        outputs = loaded.output.shape[-1]
        if outputs != classes:
            raise ValueError(f"MODEL {model!r} predicts {outputs} classes; the data has {classes}")
        return loaded
    config = registry.get_config(model)
    model_args = dict(model_args or {})
    inputs, x = kn_layers.raw_pixel_input(image_size, config.preprocessing_for(weights))
    if weights is None:
        return config.builder(weights=None, classes=classes, input_tensor=x, **model_args)
    base = config.builder(weights=weights, include_top=False, pooling="avg", input_tensor=x, **model_args)
    y = keras.layers.Dropout(dropout_rate, name="PreLogits")(base.output)
    y = keras.layers.Dense(classes, name="Logits")(y)
    y = keras.layers.Activation("softmax", dtype="float32", name="Predictions")(y)
    return functional(inputs, y, name=base.name)


def build_segmentation_model(head, backbone, classes, image_size, weights=None, model_args=None,
                             freeze_backbone=False):
    """A segmentation head (`segmentation.HEADS`) on `backbone` for raw RGB [0, 255] pixels (the backbone's
    normalisation as its first layer); `weights` are the backbone's, `model_args` the head's and backbone's options;
    `freeze_backbone` fixes the backbone (the head, decoder included, trains)."""
    config = registry.get_config(backbone)
    inputs, x = kn_layers.raw_pixel_input(image_size, config.preprocessing_for(weights))
    return segmentation.create_head(head, backbone, classes=classes, backbone_weights=weights, input_tensor=x,
                                    freeze_backbone=freeze_backbone, **dict(model_args or {}))


def _segmentation_loss_and_metrics(classes):
    """Per-pixel cross-entropy and mean IoU, both leaving out pixels marked 255 (VOC's 'ignore')."""
    ignore = data_lib.IGNORE_LABEL
    return dict(loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=ignore),
                metrics=[keras.metrics.MeanIoU(classes, sparse_y_pred=False, ignore_class=ignore, name="mean_iou")])


def confusion_matrix(model, dataset, classes):
    """(classes, classes) pixel counts, rows the true class, columns the predicted one; ignored pixels left out."""
    predict = tf.function(lambda images: tf.argmax(model(images, training=False), axis=-1, output_type=tf.int32))
    total = np.zeros((classes, classes), np.int64)
    for images, masks in dataset:
        truth = tf.cast(tf.reshape(masks, [-1]), tf.int32)
        keep = truth != data_lib.IGNORE_LABEL
        pairs = tf.boolean_mask(truth, keep) * classes + tf.boolean_mask(tf.reshape(predict(images), [-1]), keep)
        total += tf.math.bincount(pairs, minlength=classes * classes, dtype=tf.int64).numpy().reshape(classes, classes)
    return total


def segmentation_scores(confusion):
    """Per-class IoU (None for a class neither in the truth nor predicted), their mean, and pixel accuracy."""
    hits = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - hits
    per_class = [float(h / u) if u else None for h, u in zip(hits, union)]
    present = [v for v in per_class if v is not None]
    return {"iou_per_class": per_class, "mean_iou": float(np.mean(present)) if present else 0.0,
            "pixel_accuracy": float(hits.sum() / max(confusion.sum(), 1))}


def plot_segmentation_samples(model, dataset, classes, path, count=4):
    """A PNG of `count` evaluation images: the image, its mask and the model's, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, masks = next(iter(dataset.unbatch().batch(count)))
    predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
    colours = plt.get_cmap("tab20", max(classes, 2))
    figure, axes = plt.subplots(len(images), 3, figsize=(7.5, 2.5 * len(images)), squeeze=False)
    for row, (image, mask, guess) in enumerate(zip(images.numpy(), masks.numpy(), predicted)):
        for axis, picture, title in zip(axes[row], (image / 255.0, mask, guess), ("image", "mask", "predicted")):
            if picture.ndim == 2:
                axis.imshow(np.ma.masked_equal(picture, data_lib.IGNORE_LABEL), cmap=colours, vmin=-0.5,
                            vmax=max(classes, 2) - 0.5, interpolation="nearest")
            else:
                axis.imshow(np.clip(picture, 0, 1))
            axis.set_title(title if row == 0 else "")
            axis.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), mode="wb")


def _loss_and_metrics(classes, label_smoothing):
    top5 = [keras.metrics.TopKCategoricalAccuracy(5, name="top5_accuracy")] if classes > 5 else []
    return dict(loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"), *top5])


def recompute_batch_norm_statistics(model, dataset, max_batches=200):
    """Sets every trainable batch norm's moving mean and variance to its averages over training batches.

    Why: Keras keeps an exponential average (momentum 0.99) of batch statistics
    taken while the weights move; after a short run it still remembers the
    first steps' weights, or the pretrained model's data when fine-tuning, and
    the saved model predicts far worse than it has learned. Averaging the batch
    statistics of the final weights over up to `max_batches` training batches
    ("precise BN", Wu & Johnson 2021, "Rethinking Batch in BatchNorm") fixes
    that: a resnet18 fine-tuned for 3 epochs on digits went from 0.75 to 1.0
    test accuracy. Frozen batch norms keep their statistics. Returns the number
    of batches used.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not norms:
        return 0
    probe = keras.Model(model.inputs, [layer.input for layer in norms])

    @tf.function
    def batch_moments(images):
        return [tf.nn.moments(tf.cast(x, tf.float32), axes=[0, 1, 2]) for x in probe(images, training=True)]

    sums, count = None, 0
    for images, *_ in dataset.take(max_batches):
        moments = [(mean.numpy(), variance.numpy()) for mean, variance in batch_moments(images)]
        sums = moments if sums is None else [(a + m, b + v) for (a, b), (m, v) in zip(sums, moments)]
        count += 1
    for layer, (mean_sum, variance_sum) in zip(norms, sums or ()):
        layer.moving_mean.assign(mean_sum / count)
        layer.moving_variance.assign(variance_sum / count)
    return count


def freeze(model, freeze_backbone=False, fine_tune_from=None):
    """Freezes the backbone, or everything before endpoint `fine_tune_from`; returns frozen layer names.

    Frozen batch norms run in inference mode (Keras does so for trainable=False).
    """
    if freeze_backbone and fine_tune_from:
        raise ValueError("freeze_backbone and fine_tune_from exclude each other: pick one")
    frozen = set()
    if freeze_backbone:
        frozen = {layer.name for layer in model.layers if layer.name not in HEAD}
    elif fine_tune_from:
        names = features.endpoints(model)
        if fine_tune_from not in names:
            raise ValueError(f"--fine-tune-from {fine_tune_from!r} is not an endpoint of {model.name}; valid: {names}")
        index = names.index(fine_tune_from)
        if index > 0:
            frozen = set(graph.ancestors(model.get_layer(names[index - 1])))
    for layer in model.layers:
        if layer.name in frozen or layer.name == kn_layers.PREPROCESS_NAME:  # the normalisation is never trained
            layer.trainable = False
    return frozen


class LearningCheck(keras.callbacks.Callback):
    """Says when a run is not learning, and stops one whose loss is no longer a number.

    At the end of the second epoch after the warm-up, the training loss of its
    last quarter of steps should be clearly below ln(classes), the loss of a
    uniform guess (a dead or diverged network sits at or above it; labels that
    do not match the images keep it there). If not, one warning line names the
    likely causes (kept in `warnings` for metrics.json). The second epoch and
    its last steps, because slow starters are learning too: NIN on the digits
    ends its first epoch after the warm-up at 0.97 x ln(10) and the next at
    0.7 x ln(10). A NaN or infinite loss raises TrainingDiverged at once, and so do NaN or
    infinite weights at an epoch's end. (Keras' TerminateOnNaN only stops at
    the epoch's end, after BackupAndRestore has saved the NaN weights; this
    callback comes first, so the last good backup stays.)
    """

    MARGIN = 0.95  # the loss must be below this fraction of ln(classes)

    def __init__(self, classes, check_epoch, backup_dir):
        super().__init__()
        self.classes, self.check_epoch, self.backup_dir = classes, check_epoch, backup_dir
        self.chance_loss = math.log(classes)
        self.warnings = []
        self._epoch, self._running_means = 0, []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._running_means = epoch, []

    def _diverged(self, what):
        kept = (f"the last good state (end of an earlier epoch) is kept in {self.backup_dir}" if
                os.path.exists(self.backup_dir) else "no epoch had completed, so there is no backup")
        return TrainingDiverged(f"training diverged: {what}; {kept}. Lower the learning rate (--lr) or use the "
                                "default recipe")

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))  # Keras logs the epoch's running mean
        if not math.isfinite(loss):
            raise self._diverged(f"the training loss became {loss} at epoch {self._epoch + 1}, step {batch + 1}")
        if self._epoch == self.check_epoch:
            self._running_means.append(loss)

    def recent_loss(self):
        """Mean loss of the epoch's last quarter of steps, recovered from the running means."""
        means = self._running_means
        losses = [(t + 1) * m - t * previous for t, (previous, m) in enumerate(zip([0.0] + means, means))]
        tail = losses[-max(1, len(losses) // 4):]
        return sum(tail) / len(tail)

    def on_epoch_end(self, epoch, logs=None):
        # NaN weights need not show in the loss: a ReLU (oneDNN's, on some CPUs) turns NaN into 0, and a
        # network of NaN weights then reads exactly ln(classes). Checked before the backup is written.
        for variable in self.model.weights:
            values = np.asarray(variable.numpy())
            if not np.isfinite(values).all():
                kind = "NaN" if np.isnan(values).any() else "infinite"
                raise self._diverged(f"the weights became {kind} in epoch {epoch + 1} ({variable.path}) while the "
                                     f"training loss read {float((logs or {}).get('loss', math.nan)):.4g}")
        if epoch != self.check_epoch or not self._running_means:
            return
        loss = self.recent_loss()
        if not loss < self.MARGIN * self.chance_loss:
            message = (f"not learning: at the end of epoch {epoch + 1} the training loss is {loss:.3f}, not clearly "
                       f"below {self.chance_loss:.3f} (ln of the {self.classes} classes, a uniform guess). Likely "
                       "causes: a learning rate too high or too low, labels that do not match the images, or "
                       "augmentation too strong for the images; try the default recipe, a smaller --lr, or "
                       "--min-crop-area closer to 1")
            self.warnings.append(message)
            say(f"warning: {message}")


class HistoryFile(keras.callbacks.Callback):
    """history.csv, rewritten atomically each epoch; on resume keeps the epochs before the restart.

    It sits before BackupAndRestore in the callbacks, so an epoch's row is on disk before its backup:
    a run killed in between redoes that epoch, and the row is replaced, not lost or doubled.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.rows = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is None:  # BackupAndRestore has set the starting epoch by now
            self.rows = [r for r in read_history(self.path) if int(r["epoch"]) < epoch]

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        keys = list(dict.fromkeys(k for row in self.rows for k in row))

        def write(f):
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)

        atomic_write(self.path, write)


def read_history(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class EpochLine(keras.callbacks.Callback):
    """One line per epoch, with throughput."""

    def __init__(self, images_per_epoch, epochs):
        super().__init__()
        self.images_per_epoch, self.epochs = images_per_epoch, epochs
        self.seconds, self.images = 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        self.seconds += elapsed
        self.images += self.images_per_epoch
        metrics = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items() if "learning_rate" not in k)
        say(f"epoch {epoch + 1}/{self.epochs}: {metrics} ({self.images_per_epoch / elapsed:.1f} img/s)")


def plot_history(rows, path, metric="accuracy"):
    """training_curves.png: loss and `metric` per epoch, training and validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", metric)):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + metric
            if rows and key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], style, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()), mode="wb")


# What a resumed run must share with the run it continues (the recipe may change: a lower --lr after a divergence).
RESUME_KEYS = ("model", "backbone", "data", "image_size", "batch_size", "weights", "freeze_backbone",
               "fine_tune_from", "model_args", "mixed_precision", "seed", "color_jitter")


def check_output(output, resume, overwrite, settings):
    """Refuses to replace an earlier run unless told to, and to resume one with other settings; writes nothing."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: pick one")
    existing = [n for n in ("run.json", "model.keras", "backup") if os.path.exists(os.path.join(output, n))]
    if existing and not (resume or overwrite):
        raise FileExistsError(f"--output {output!r} already holds a run ({', '.join(existing)}); pass --resume to "
                              "continue it or --overwrite to start over")
    if resume and existing:
        if "model.keras" in existing and "backup" not in existing:
            raise ValueError(f"--output {output!r}: that run finished (model.keras, no backup/); nothing to resume")
        try:
            with open(os.path.join(output, "run.json")) as f:
                earlier = json.load(f)
        except (OSError, ValueError):
            earlier = {}
        changed = [f"{key} {earlier[key]!r} -> {settings[key]!r}" for key in RESUME_KEYS
                   if key in earlier and earlier[key] != settings[key]]
        if changed:
            raise ValueError(f"--resume: the run in {output!r} was started with other settings ({'; '.join(changed)}); "
                             "resume with the same ones, or start over with --overwrite")


def start_output(output, overwrite, resume, class_names, settings):
    """Creates the run directory with labels.txt and run.json (kept as it is on resume); True if it was new."""
    created = not os.path.exists(output)
    if overwrite:
        shutil.rmtree(os.path.join(output, "backup"), ignore_errors=True)
    os.makedirs(output, exist_ok=True)
    atomic_write(os.path.join(output, "labels.txt"), lambda f: f.write("\n".join(class_names) + "\n"))
    if not (resume and os.path.exists(os.path.join(output, "run.json"))):
        atomic_write(os.path.join(output, "run.json"), lambda f: json.dump(settings, f, indent=2))
    return created


def train(model, data, *, backbone=None, image_size=None, epochs=10, batch_size=32, weights=None, freeze_backbone=False,
          fine_tune_from=None, recipe="auto", optimizer=None, lr=None, label_smoothing=None, weight_decay=None,
          warmup_epochs=None, mixed_precision="auto", distribute="auto", output=None, resume=False, overwrite=False,
          min_crop_area=None, flip=None, color_jitter=False, validation_fraction=0.2, seed=0, verbose=1, model_args=None):
    """Trains `model` (a registry name or a `.keras` file) on `data`; returns `(model, history)`.

    `recipe` names a training recipe (see `kerasnets.recipes`: `auto` is
    `train-head` with a frozen backbone, `fine-tune` when starting from
    trained weights, `scratch` otherwise);
    `optimizer`, `lr`, `label_smoothing`, `weight_decay` and `warmup_epochs`
    `min_crop_area`, `flip` override its fields. `mixed_precision="auto"` computes in float16 on
    NVIDIA GPUs (compute capability >= 7.0), bfloat16 on CPUs with
    AVX512_BF16/AMX-BF16, float32 elsewhere (see `kerasnets.precision`).
    `model_args` go to the registry builder (e.g. `{"batch_norm": True}` for
    nin, `{"depth_multiplier": 0.5}` for inception_v3).
    A segmentation head's name (`fcn8s`, `fcn16s`, `fcn32s`, `unet`,
    `deeplab_v3`; see `kerasnets.segmentation`) trains it on `backbone` (a
    registry name; default the head's own) with `weights` as the backbone's,
    on `data` in the ROOT/{train,test}/{images,masks} layout
    (`data.load_segmentation`); metrics.json then holds `mean_iou`,
    `iou_per_class` and `pixel_accuracy`, and `predictions.png` shows some
    test images with their true and predicted masks.
    `model` computes in the run's precision; `model.keras` holds a float32
    copy (same weights). `history` is a keras History whose `.history` holds
    every epoch of the run, those before a resume included. See the module docstring for what is
    written to `output` (default `runs/<model>`).
    """
    for flag, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{flag} must be a positive integer, got {value!r}")
    policy = precision_lib.resolve(mixed_precision)
    is_file = isinstance(model, str) and model.endswith(".keras")
    segmenting = isinstance(model, str) and model in segmentation.HEADS
    if backbone is not None and not segmenting:
        raise ValueError(f"backbone={backbone!r} applies to segmentation heads {sorted(segmentation.HEADS)}; "
                         f"model={model!r} is not one")
    if segmenting:
        backbone = backbone or segmentation.default_backbone(model)
        label_smoothing = 0.0 if label_smoothing is None else label_smoothing
        if label_smoothing:
            raise ValueError(f"label_smoothing={label_smoothing}: segmentation trains without label smoothing")
    recipe = recipes.resolve(recipe, fine_tuning=is_file or weights is not None, frozen_backbone=freeze_backbone,
                             epochs=epochs,
                             optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                             label_smoothing=label_smoothing, warmup_epochs=warmup_epochs,
                             min_crop_area=min_crop_area, flip=flip)
    if is_file:
        if not os.path.exists(model):
            raise FileNotFoundError(f"MODEL {model!r}: no such .keras file")
        saved_size = saved_input_size(model)
        if image_size is None and saved_size is None:
            raise ValueError(f"MODEL {model!r} accepts any image size; give image_size (--image-size)")
        if image_size is not None and saved_size not in (None, image_size):
            raise ValueError(f"image_size={image_size}, but MODEL {model!r} takes {saved_size}x{saved_size} images")
        image_size = image_size or saved_size
    else:
        config = registry.get_config(backbone if segmenting else model)
        image_size = image_size or config.default_size
        if image_size < config.min_size:
            raise ValueError(f"image_size={image_size} is below {config.name}'s minimum {config.min_size}")
        if segmenting:
            segmentation.check_input_size(model, backbone, image_size, **dict(model_args or {}))
    output = output or os.path.join("runs", os.path.basename(str(model)).removesuffix(".keras"))
    # Multi-worker collectives must be set up before TensorFlow runs anything else.
    strategy = make_strategy(distribute)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    is_chief, chief_output = not multi_worker or strategy.cluster_resolver.task_id == 0, output
    if not is_chief:
        # Only the chief writes the run directory; the other workers write beside it, to be discarded.
        output = os.path.join(output, f"worker_{strategy.cluster_resolver.task_id}")
        overwrite = overwrite or not resume
    settings = dict(model=str(model), backbone=backbone, data=str(data), image_size=image_size, epochs=epochs, batch_size=batch_size,
                    weights=None if weights is None else str(weights), freeze_backbone=freeze_backbone,
                    fine_tune_from=fine_tune_from, recipe=dataclasses.asdict(recipe), color_jitter=color_jitter,
                    mixed_precision=policy, seed=seed, model_args=dict(model_args or {}))
    check_output(output, resume, overwrite, settings)
    keras.utils.set_random_seed(seed)

    if batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size={batch_size} (global) must be a multiple of the "
                         f"{strategy.num_replicas_in_sync} replicas")
    augmentation = data_lib.Augmentation(min_area=recipe.min_crop_area, flip=recipe.flip, color_jitter=color_jitter)
    if segmenting:
        found = data_lib.load_segmentation(data, image_size, batch_size, augmentation, seed,
                                           drop_remainder=strategy.num_replicas_in_sync > 1)
    else:
        found = data_lib.load(data, image_size, batch_size, augmentation, validation_fraction, seed,
                              drop_remainder=strategy.num_replicas_in_sync > 1)
    classes = len(found.class_names)
    say(f"data found: {found.train_count} training images{' with masks' if segmenting else ''} in {classes} classes, "
        f"{found.eval_count} for "
        f"evaluation ({found.eval_name}); {len(found.skipped)} unreadable skipped"
        + (f", e.g. {found.skipped[0]}" if found.skipped else ""))
    # Classifiers learn from one-hot labels (label smoothing needs them); masks stay class indices.
    one_hot = (lambda image, mask: (image, mask)) if segmenting else (  # noqa: E731
        lambda image, label: (image, tf.one_hot(label, classes)))
    train_ds = found.train.map(one_hot)
    eval_ds = found.eval.map(one_hot)
    say(f"{recipe.describe()}; precision {policy}")
    hint = precision_lib.onednn_hint()
    if hint:
        say(f"note: {hint}")

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        steps_per_epoch = max(1, -(-found.train_count // batch_size))

        def loss_and_metrics():
            if segmenting:
                return _segmentation_loss_and_metrics(classes)
            return _loss_and_metrics(classes, recipe.label_smoothing)

        def make_metrics():
            spec = loss_and_metrics()
            return spec["loss"], spec["metrics"]

        with strategy.scope():
            if segmenting:  # the head freezes its own backbone: everything but the classifier would be too much
                net = build_segmentation_model(model, backbone, classes, image_size, weights, model_args,
                                               freeze_backbone)
                frozen = freeze(net, fine_tune_from=fine_tune_from) | {
                    layer.name for layer in net.layers if not layer.trainable and layer.weights}
            else:
                net = build_model(model, classes, image_size, weights, model_args=model_args)
                frozen = freeze(net, freeze_backbone, fine_tune_from)
            net.compile(optimizer=recipes.make_optimizer(recipe, steps_per_epoch, epochs), **loss_and_metrics())
        # Everything is checked and built: only now does the run directory appear.
        created = start_output(output, overwrite, resume, found.class_names, settings)
        trainable = sum(int(np.prod(v.shape)) for v in net.trainable_weights)
        say(f"model built: {net.name}, {net.count_params():,} parameters ({trainable:,} trainable, "
            f"{len(frozen)} layers frozen), input {image_size}x{image_size}, policy {policy}, "
            f"{strategy.num_replicas_in_sync} replica(s)")
        epoch_line = EpochLine(found.train_count, epochs)
        history_file = HistoryFile(os.path.join(output, "history.csv"))
        check_epoch = min(math.ceil(recipe.warmup_epochs) + 1, epochs - 1)
        backup_dir = os.path.join(chief_output, "backup")  # the chief's, for every worker
        learning_check = LearningCheck(classes, check_epoch, backup_dir)
        if is_chief:
            backups = [keras.callbacks.BackupAndRestore(backup_dir)]
        else:  # restores from the chief's backup when resuming, writes none
            backups = [distributed.ChiefBackup(backup_dir)] if resume else []
        # Over several replicas Keras' own validation needs batches padded to split evenly, and counts the padding in
        # the loss, and distributed.fit has no validation of its own: every image once on one device instead, after
        # LearningCheck (a diverged epoch stops unscored) and before the callbacks that read the figures.
        replicated = strategy.num_replicas_in_sync > 1 or multi_worker
        callbacks = [
            learning_check,
            *([distributed.Validation(eval_ds, make_metrics)] if replicated else []),
            history_file,
            epoch_line,
            keras.callbacks.TensorBoard(os.path.join(output, "logs")),
            *backups,
        ]
        try:
            if multi_worker:
                history = distributed.fit(net, strategy, train_ds, epochs, callbacks, verbose, found.train_count,
                                          batch_size)
            else:
                # (The data set is shuffled by its pipeline; Keras' own shuffle applies to arrays only.)
                history = net.fit(train_ds, epochs=epochs, validation_data=None if replicated else eval_ds,
                                  callbacks=callbacks, verbose=verbose, shuffle=False)
        except BaseException:
            if created and not history_file.rows:  # a new run that failed before its first epoch leaves nothing
                shutil.rmtree(output, ignore_errors=True)
            raise
        recomputed = recompute_batch_norm_statistics(net, found.train)
        if recomputed:
            say(f"batch-norm statistics recomputed over {recomputed} training batches of the final weights")
        if multi_worker:  # each worker recomputed them on its own batches: pooled, every worker saves the same model
            distributed.BatchNormPool(net, strategy)()
        # model.keras computes in float32 whatever the run's precision (portable, exportable; see
        # kerasnets.precision.with_precision for bfloat16 inference), and metrics.json scores that model.
        saved = net if policy == "float32" else precision_lib.with_precision(net, "off")
        # A fresh functional model over the same layers (plain Keras opens model.keras; ShuffleNet's and DeepLab's
        # after `import kerasnets`): it is compiled and evaluated on its own, leaving the training model's compiled
        # state alone.
        saved = keras.Model(saved.input, saved.output, name=saved.name)
        # The trained optimizer goes with it, so training can go on from the file.
        saved.compile(optimizer=net.optimizer, **loss_and_metrics())
        # Every image once, on this process alone: no zero-weight padding (Keras' evaluate counts it in the loss's
        # denominator) and one loss over the whole split (Keras' weighs each batch's mean by its image count).
        results = distributed.evaluate(saved, eval_ds, *make_metrics())
        if segmenting:  # per-class IoU over every test pixel (Keras' MeanIoU gives the mean only)
            results.update(segmentation_scores(confusion_matrix(saved, found.eval, classes)))
        rows = history_file.rows or []
        history.history = {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"} if rows else \
            history.history
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    metrics = {**{k: v if k == "iou_per_class" else float(v) for k, v in results.items()}, "epochs": len(rows),
               "examples_per_second": epoch_line.images / epoch_line.seconds if epoch_line.seconds else None,
               "images_skipped": len(found.skipped), "train_images": found.train_count,
               "eval_images": found.eval_count, "eval_split": found.eval_name,
               **({} if segmenting else {"eval_central_crop": data_lib.CENTRAL_FRACTION}),
               "batch_norm_statistics_batches": recomputed, "warnings": learning_check.warnings}
    atomic_write(os.path.join(output, "metrics.json"), lambda f: json.dump(metrics, f, indent=2))
    tmp_model = os.path.join(output, f".model-{os.getpid()}.keras")
    saved.save(tmp_model)
    os.replace(tmp_model, os.path.join(output, "model.keras"))
    headline = "mean_iou" if segmenting else "accuracy"
    plot_history(rows, os.path.join(output, "training_curves.png"), headline)
    if segmenting:
        plot_segmentation_samples(saved, found.eval, classes, os.path.join(output, "predictions.png"))
    say(f"done: {headline.replace('_', ' ')} {metrics[headline]:.4f} on {found.eval_count} {found.eval_name} images; "
        f"wrote {output}/model.keras, metrics.json, history.csv, training_curves.png"
        f"{', predictions.png' if segmenting else ''}, labels.txt")
    return net, history
