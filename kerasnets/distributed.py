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
saved they are pooled over the workers: `sync_batch_norm_statistics`. Pooling
a few hundred numbers per layer once an epoch is cheaper than synchronised
batch norm, which adds an all-reduce to every batch-norm layer of every step.
Evaluation then runs on each worker over the whole evaluation set, every image
once: identical weights give identical metrics on every worker, equal to a
single-process `model.evaluate` of the saved model.
"""

import keras
import numpy as np
import tensorflow as tf


def _distribute(strategy, dataset):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return iter(strategy.experimental_distribute_dataset(dataset.repeat().with_options(options)))


def sync_batch_norm_statistics(model, strategy):
    """Pools every batch norm's moving mean and variance over the workers (all of them must call this).

    The pooled variance is that of all workers' data together: the mean of the
    variances plus the variance of the means (E[x^2] - E[x]^2 over workers).
    Returns the number of layers pooled.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return 0

    def local_moments():
        values = []
        for layer in norms:
            # tensors, not the variables: all_reduce would take a variable for a destination
            mean, variance = tf.identity(layer.moving_mean.value), tf.identity(layer.moving_variance.value)
            values += [mean, variance + tf.square(mean)]
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, values)

    pooled = strategy.experimental_local_results(tf.function(lambda: strategy.run(local_moments))())[0]
    for layer, mean, second_moment in zip(norms, pooled[0::2], pooled[1::2]):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(tf.maximum(second_moment - tf.square(mean), 0.0))
    return len(norms)


def evaluate(model, eval_ds, loss, metrics):
    """Loss and metrics over every image of `eval_ds` once, on this worker alone: {name: value}.

    `loss`/`metrics`: new Keras objects like the compiled ones (the loss is
    averaged per image, as `model.evaluate` reports it).
    """
    forward = tf.function(lambda images: model(images, training=False))
    per_image = loss.__class__(**{**loss.get_config(), "reduction": None})
    mean_loss = keras.metrics.Mean(name="loss")
    for images, labels in eval_ds:
        probabilities = forward(images)
        mean_loss.update_state(per_image(labels, probabilities))
        for metric in metrics:
            metric.update_state(labels, probabilities)
    return {m.name: float(np.asarray(m.result())) for m in [mean_loss, *metrics]}


def fit(model, strategy, train_ds, epochs, eval_ds, callbacks, verbose, train_count, batch_size, make_metrics):
    """Like `model.fit(train_ds, epochs, validation_data=eval_ds, callbacks)`; returns the History.

    `make_metrics()` gives `(loss, metrics)`, new objects like the compiled ones, for the evaluations.
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
    callback_list.on_train_begin()
    epoch_logs = {}
    for epoch in range(getattr(model, "_initial_epoch", 0) or 0, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            logs = {k: float(v) for k, v in train_step(train_iterator).items()}
            callback_list.on_train_batch_end(step, logs)
        epoch_logs = dict(logs)
        sync_batch_norm_statistics(model, strategy)
        epoch_logs.update({f"val_{k}": v for k, v in evaluate(model, eval_ds, *make_metrics()).items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)
    return history
