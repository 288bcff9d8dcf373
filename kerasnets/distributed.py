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
waits forever: the datasets repeat and each epoch is a fixed number of global
batches (the training remainder is dropped, as with several replicas in
`fit`; evaluation wraps around to fill its last global batch).
"""

import keras
import tensorflow as tf


def _distribute(strategy, dataset):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return iter(strategy.experimental_distribute_dataset(dataset.repeat().with_options(options)))


def fit(model, strategy, train_ds, epochs, eval_ds, callbacks, verbose, train_count, eval_count, batch_size):
    """Like `model.fit(train_ds, epochs, validation_data=eval_ds, callbacks)`; returns the History."""
    steps = max(1, train_count // batch_size)
    eval_steps = max(1, -(-eval_count // batch_size))
    train_iterator, eval_iterator = _distribute(strategy, train_ds), _distribute(strategy, eval_ds)

    def reduce(logs):
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in logs.items()}

    @tf.function
    def train_step(iterator):
        return reduce(strategy.run(model.train_step, args=(next(iterator),)))

    @tf.function
    def test_step(iterator):
        return reduce(strategy.run(model.test_step, args=(next(iterator),)))

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
        model.reset_metrics()
        for _ in range(eval_steps):
            val_logs = test_step(eval_iterator)
        epoch_logs.update({f"val_{k}": float(v) for k, v in val_logs.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)
    return history


def evaluate(model, strategy, eval_ds, eval_count, batch_size):
    """`model.evaluate` for the multi-worker loop (same wrap-around as `fit`'s validation)."""
    iterator = _distribute(strategy, eval_ds)

    @tf.function
    def test_step(iterator):
        logs = strategy.run(model.test_step, args=(next(iterator),))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in logs.items()}

    model.reset_metrics()
    for _ in range(max(1, -(-eval_count // batch_size))):
        logs = test_step(iterator)
    return {k: float(v) for k, v in logs.items()}
