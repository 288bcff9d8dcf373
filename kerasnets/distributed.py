"""Training under MultiWorkerMirroredStrategy without `model.fit`.

Keras 3's `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras
issue 20585: its log reduction calls `strategy.reduce(..., axis=0)` on scalar
per-replica metrics, "Attempt to convert a value (PerReplica...)"). This loop
drives the model's own `train_step`/`test_step` -- the same loss, optimizer,
loss scaling and metrics as `fit` -- through `strategy.run` in a
`tf.function`, reduces the metrics with a plain MEAN, and calls the same
callbacks (BackupAndRestore, history, TensorBoard, progress) at the same
points.

Every worker must run the same number of steps, or the collective all-reduce
waits forever: the training data repeats and each epoch is a fixed number of
global batches (the remainder is dropped, as with several replicas in `fit`).

All workers end with the same model. The trainable weights are all-reduced at
every step; batch norm's moving statistics are not (each worker would keep
those of its own shard), so before every evaluation and before the model is
saved they are pooled over the workers: `BatchNormPool`. Pooling
a few hundred numbers per layer once an epoch is cheaper than synchronised
batch norm, which adds an all-reduce to every batch-norm layer of every step.
Validation is a callback (`Validation`) that runs on each worker over the
whole evaluation set, every image once: identical weights give identical
metrics on every worker, equal to a single-process `model.evaluate` of the
saved model (the loss: see `evaluate`). `fit` under MirroredStrategy takes the
same callback in place of its own validation.
"""

import keras
import numpy as np
import tensorflow as tf


def _distribute(strategy, dataset):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return iter(strategy.experimental_distribute_dataset(dataset.repeat().with_options(options)))


class ChiefBackup(keras.callbacks.BackupAndRestore):
    """A non-chief worker's BackupAndRestore when resuming: it restores the chief's backup and writes none.

    Every worker holds the same state at an epoch's end (weights and optimizer
    all-reduced, batch-norm statistics pooled), so the chief's backup is
    everyone's. Restoring from that one backup also means all workers resume
    at the same epoch, even when one was killed between the chief's backup and
    its own: workers resuming at different epochs would wait for each other's
    all-reduces forever.
    """

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass  # the chief removes its backup


class BatchNormPool:
    """Pools the trainable batch norms' moving statistics over the workers; all of them must call it.

    The pooled mean is the mean of the workers' means; the pooled variance is
    that of all workers' data together: the mean of the variances plus the
    variance of the means (taken around the pooled mean, in two all-reduces,
    so no large squares are subtracted). Frozen batch norms are the same on
    every worker and are left alone.
    """

    def __init__(self, model, strategy):
        self.norms = [layer for layer in model.layers
                      if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        self.strategy = strategy
        self._pool = tf.function(lambda: strategy.run(self._replica_pool))

    def _replica_pool(self):
        context = tf.distribute.get_replica_context()
        # tensors, not the variables: all_reduce would take a variable for a destination
        means = [tf.identity(layer.moving_mean.value) for layer in self.norms]
        variances = [tf.identity(layer.moving_variance.value) for layer in self.norms]
        pooled_means = context.all_reduce(tf.distribute.ReduceOp.MEAN, means)
        spread = [v + tf.square(m - p) for v, m, p in zip(variances, means, pooled_means)]
        return pooled_means, context.all_reduce(tf.distribute.ReduceOp.MEAN, spread)

    def __call__(self):
        """Returns the number of batch norms pooled."""
        if not self.norms:
            return 0
        means, variances = self.strategy.experimental_local_results(self._pool())[0]
        for layer, mean, variance in zip(self.norms, means, variances):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        return len(self.norms)


def scoring_step(model, loss):
    """A tf.function: (images, labels) -> (the model's outputs, the loss per image, or per pixel for masks).

    The loss is computed in the same graph as the forward pass, so a softmax
    output's cross-entropy comes from its logits, as in Keras' compiled
    `evaluate` (from probabilities, Keras clips them at 1e-7: an image the
    model gets confidently wrong would count ln(1e7) = 16.1 at most).
    """
    per_image = loss.__class__(**{**loss.get_config(), "reduction": None})

    def step(images, labels):
        outputs = model(images, training=False)
        return outputs, per_image(labels, outputs)

    return tf.function(step)


def evaluate(model, eval_ds, loss, metrics, step=None):
    """Loss and metrics over every image of `eval_ds` once, on this worker alone: {name: value}.

    `loss`/`metrics`: new Keras objects like the compiled ones. The loss is
    the mean over every image of the split, or for masks over every pixel
    but those of the loss's `ignore_class`. (`model.evaluate` averages each
    batch's mean weighted by its image count: the same for classification,
    and for masks only where every batch has as many ignored pixels per
    image.) `step`: `scoring_step(model, loss)`, to reuse one trace across calls.
    """
    step = scoring_step(model, loss) if step is None else step
    ignore = loss.get_config().get("ignore_class")
    mean_loss = keras.metrics.Mean(name="loss")
    for images, labels in eval_ds:
        outputs, losses = step(images, labels)
        # (unreduced, an ignored pixel's loss is a 0 that must not count)
        counted = None if ignore is None else tf.cast(tf.not_equal(tf.cast(labels, tf.int32), ignore), tf.float32)
        mean_loss.update_state(losses, sample_weight=counted)
        for metric in metrics:
            metric.update_state(labels, outputs)
    return {m.name: float(np.asarray(m.result())) for m in [mean_loss, *metrics]}


class Validation(keras.callbacks.Callback):
    """Adds `val_<name>` to each epoch's logs: `evaluate` over every image of `eval_ds` once, on one device.

    For `fit` under a strategy of several replicas, whose own validation hands
    them padded batches and counts the padding in the loss, and for this
    module's `fit` (which pools the batch-norm statistics before the callbacks
    run). Put it before the callbacks that read the figures (Keras appends
    History and the progress bar last). `make_metrics()` gives `(loss,
    metrics)`, new objects like the compiled ones.
    """

    def __init__(self, eval_ds, make_metrics):
        super().__init__()
        self.eval_ds, self.make_metrics, self.step = eval_ds, make_metrics, None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:  # no one to see the figures
            return
        if self.step is None:  # one trace for the whole run
            self.step = scoring_step(self.model, self.make_metrics()[0])
        scores = evaluate(self.model, self.eval_ds, *self.make_metrics(), self.step)
        logs.update({f"val_{name}": value for name, value in scores.items()})


def _starting_epochs(strategy, epoch):
    """Every worker's starting epoch (they must agree, or the all-reduces wait for each other forever)."""
    gather = tf.function(lambda: strategy.run(
        lambda: tf.distribute.get_replica_context().all_gather(tf.constant([epoch], tf.int64), axis=0)))
    return sorted(set(int(e) for e in strategy.experimental_local_results(gather())[0].numpy()))


def fit(model, strategy, train_ds, epochs, callbacks, verbose, train_count, batch_size):
    """Like `model.fit(train_ds, epochs, callbacks)`; returns the History.

    Validation is a callback: `Validation`. The batch norms' moving statistics
    are pooled over the workers at each epoch's end, before the callbacks run.
    """
    steps = max(1, train_count // batch_size)
    train_iterator = _distribute(strategy, train_ds)

    def reduce(logs):
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in logs.items()}

    @tf.function
    def train_step(iterator):
        return reduce(strategy.run(model.train_step, args=(next(iterator),)))

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(callbacks + [history], add_progbar=verbose != 0,
                                                 verbose=verbose, model=model, epochs=epochs, steps=steps)
    model.stop_training = False
    with strategy.scope():  # BackupAndRestore may build the optimizer's variables before restoring them
        callback_list.on_train_begin()
    start = getattr(model, "_initial_epoch", 0) or 0
    starts = _starting_epochs(strategy, start)
    if len(starts) > 1:
        raise ValueError(f"the workers would resume at different epochs ({', '.join(map(str, starts))}): every "
                         "worker restores the chief's backup/, so all of them must see the chief's --output "
                         "(a shared disk)")
    pool_batch_norms = BatchNormPool(model, strategy)
    epoch_logs = {}
    for epoch in range(start, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            logs = {k: float(v) for k, v in train_step(train_iterator).items()}
            callback_list.on_train_batch_end(step, logs)
        epoch_logs = dict(logs)
        pool_batch_norms()  # the same model on every worker before anything scores or saves it
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)
    return history
