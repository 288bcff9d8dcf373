"""Argument validation and pieces shared by every builder.

Checks run before any layer is built, so a wrong argument costs nothing and
the message names the argument, the value received and what would be valid.
"""

import os

import keras

from kerasnets.model import KerasnetsModel

POOLING_CHOICES = (None, "avg", "max")


def say(message):
    """One progress line per stage, flushed at once."""
    print(f"[kerasnets] {message}", flush=True)


def atomic_write(path, writer, mode="w"):
    """Writes through `writer(file)` to a temporary file, then renames it over `path`."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, mode) as f:
        writer(f)
    os.replace(tmp, path)


def validate_common(*, include_top, weights, input_shape, input_tensor, pooling, classes, config):
    """Checks the keras.applications-style arguments shared by all builders.

    Returns `(height, width, channels)` of the input (height/width may be None).
    """
    if not isinstance(include_top, bool):
        raise TypeError(f"include_top must be True or False, got {include_top!r}")
    if pooling not in POOLING_CHOICES:
        raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got pooling={pooling!r}")
    if include_top and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise ValueError(f"classes must be a positive integer with include_top=True, got classes={classes!r}")
    check_weights_argument(weights)
    shape = resolve_input_shape(input_shape, input_tensor, config)
    if weights == "imagenet":
        if shape[2] != 3:
            raise ValueError(
                f"weights='imagenet' needs 3 input channels (RGB); got input_shape={tuple(shape)}. "
                "Use weights=None for other channel counts."
            )
        if include_top and classes != config.classes:
            raise ValueError(
                f"weights='imagenet' with include_top=True predicts {config.classes} classes; got "
                f"classes={classes}. Use include_top=False and add your own classifier."
            )
    return shape


def check_final_endpoint(final_endpoint, valid, include_top):
    """`final_endpoint` must be one of `valid`; truncating leaves no classifier."""
    if final_endpoint not in valid:
        raise ValueError(f"Unknown final_endpoint {final_endpoint!r}; valid: {list(valid)}")
    if final_endpoint != valid[-1] and include_top:
        raise ValueError(f"final_endpoint={final_endpoint!r} truncates the network, which then has no classifier: "
                         f"pass include_top=False (or final_endpoint={valid[-1]!r})")


def check_weights_argument(weights):
    """`weights` must be None, a registered tag, or a path that exists (or a checkpoint prefix)."""
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "weights must be None, 'imagenet' or the path of a weights file or TF checkpoint, "
            f"got weights={weights!r}"
        )
    path = os.fspath(weights)
    if not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise FileNotFoundError(
            f"weights={path!r}: no such file, directory or TF checkpoint prefix. Valid: None, "
            "'imagenet', a keras.applications .h5, a Keras .weights.h5/.keras file, or a TF-slim "
            "checkpoint prefix (the path before .index)."
        )


def resolve_input_shape(input_shape, input_tensor, config):
    """Validates `input_shape` / `input_tensor`; returns a 3-tuple (H, W, C)."""
    if input_tensor is not None:
        tensor_shape = tuple(keras.ops.shape(input_tensor))[1:] if keras.backend.is_keras_tensor(
            input_tensor) else tuple(input_tensor.shape)[1:]
        if input_shape is not None and tuple(input_shape) != tuple(tensor_shape):
            raise ValueError(
                f"input_shape={tuple(input_shape)} does not match input_tensor's shape {tensor_shape}"
            )
        input_shape = tensor_shape
    if input_shape is None:
        return (config.default_size, config.default_size, 3)
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be a tuple (height, width, channels), got {input_shape!r}") from None
    if len(shape) != 3:
        raise ValueError(
            f"input_shape must have 3 entries (height, width, channels), channels last; got input_shape={input_shape!r}"
        )
    height, width, channels = shape
    if height in (1, 3, 4) and channels not in (None, 1, 3, 4):
        raise ValueError(f"input_shape={input_shape!r} looks channels-first; kerasnets models are channels-last: "
                         f"use input_shape={(width, channels, height)!r}")
    if channels is None or channels < 1:
        raise ValueError(f"input_shape needs a known positive channel count, got input_shape={input_shape!r}")
    for dim in (height, width):
        if dim is not None and dim < config.min_size:
            raise ValueError(
                f"input_shape={input_shape!r} is too small for {config.name}: height and width must be at "
                f"least {config.min_size} (default {config.default_size})."
            )
    return shape


def make_input(shape, input_tensor):
    """The model's input layer; wraps a non-Keras `input_tensor` like keras.applications."""
    if input_tensor is None:
        return keras.Input(shape=shape, name="input"), None
    if keras.backend.is_keras_tensor(input_tensor):
        sources = keras.utils.get_source_inputs(input_tensor)
        return input_tensor, sources[0] if len(sources) == 1 else sources
    inputs = keras.Input(tensor=input_tensor, shape=shape, name="input")
    return inputs, None


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
    x = keras.layers.Dense(classes, kernel_initializer=initializer, name="Logits")(x)
    return keras.layers.Activation(activation, dtype="float32", name="Predictions")(x)


def model_with_top(inputs, source_inputs, x, *, include_top, pooling, classes, classifier_activation, initializer,
                   name, pool_name="global_pool", dropout=None):
    """The builders' common ending: classifier or pooling, then the Model."""
    if include_top:
        x = classifier(x, classes, classifier_activation, initializer, pool_name=pool_name, dropout=dropout)
    else:
        x = global_pooling(x, pooling, avg_name=pool_name)
    return KerasnetsModel(inputs if source_inputs is None else source_inputs, x, name=name)


def is_endpoint_layer(layer):
    """Endpoint layers carry a bare name; inner layers are scoped with '.'."""
    return "." not in layer.name and not isinstance(layer, keras.layers.InputLayer)


def endpoints(model):
    """Names of the endpoints `model` has, in network order (input to output)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"endpoints() needs a keras.Model, got {type(model).__name__}")
    return [layer.name for layer in layers_in_network_order(model) if is_endpoint_layer(layer)]


def layers_in_network_order(model):
    """Layers sorted by their longest path from the input (ties: Keras' order).

    `model.layers` is sorted by distance to the *output*, which interleaves
    side heads (AuxLogits) with the trunk; this order follows the builder's.
    """
    depth = {}
    for layer in model.layers:
        parents = []
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                parents.append(tensor._keras_history.operation)
        depth[layer.name] = 1 + max((depth.get(p.name, 0) for p in parents), default=-1)
    index = {layer.name: i for i, layer in enumerate(model.layers)}
    return sorted(model.layers, key=lambda layer: (depth[layer.name], index[layer.name]))


def feature_extractor(model, endpoints=None, name=None):
    """A Model from `model`'s input to a dict {endpoint name: feature map}.

    `endpoints` defaults to all the model's endpoints; shares weights with `model`.
    """
    available = globals()["endpoints"](model)
    wanted = available if endpoints is None else endpoints
    if isinstance(wanted, str):
        wanted = [wanted]
    if not wanted:
        raise ValueError(f"endpoints must name at least one endpoint; valid: {available}")
    unknown = [e for e in wanted if e not in available]
    if unknown:
        raise ValueError(f"Unknown endpoint(s) {unknown} for model {model.name!r}; valid: {available}")
    outputs = {e: model.get_layer(e).output for e in wanted}
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return KerasnetsModel(inputs, outputs, name=name or f"{model.name}_features")
