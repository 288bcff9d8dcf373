"""What sits on a network's last feature map: a classifier, or global pooling (keras.applications' `pooling`)."""

import keras

from kerasnets.layers import blocks

POOLING_CHOICES = (None, "avg", "max")


def global_pooling(x, pooling, avg_name="global_pool", max_name="global_max_pool"):
    """Applies `pooling` ('avg'/'max'/None) like keras.applications without the top."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=avg_name)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=max_name)(x)
    return x


def classifier(x, classes, activation, initializer, pool_name="global_pool", dropout=None):
    """Global average pool, optional `(rate, name)` dropout, `Logits` and `Predictions` (float32)."""
    x = keras.layers.GlobalAveragePooling2D(name=pool_name)(x)
    if dropout is not None:
        rate, name = dropout
        x = keras.layers.Dropout(rate, name=name)(x)
    x = keras.layers.Dense(classes, kernel_initializer=blocks.fresh_initializer(initializer), name="Logits")(x)
    return predictions(x, activation)


def predictions(logits, activation):
    """The `Predictions` endpoint; float32 whatever the dtype policy, so mixed precision keeps exact outputs."""
    return keras.layers.Activation(activation, dtype="float32", name="Predictions")(logits)
