"""The one build path every registered model takes.

validate the arguments -> resolve the weights (before anything is built, so a
missing file or a failed download costs nothing) -> the input -> the family's
body, which yields its endpoints in order and stops at `final_endpoint` ->
the head (classifier, or keras.applications' `pooling`) and any side head ->
load the weights. Compare timm's `build_model_with_cfg` and torchvision's
`_resnet`. A family supplies only its body (and, if it differs, its head).

Every check runs before the first layer is built, so a wrong argument costs
nothing, and the message names the argument, the value and what would be valid.
"""

import dataclasses
import os
from typing import Any, Callable, Optional

import keras

from kerasnets import registry
from kerasnets import weights as weights_lib
from kerasnets.layers import heads
from kerasnets.model import functional


@dataclasses.dataclass(frozen=True)
class Net:
    """What a family's body and head are given."""

    include_top: bool
    classes: int
    classifier_activation: Any
    initializer: Any  # the family's, or "zeros" where a weights file will fill every layer


@dataclasses.dataclass(frozen=True)
class ClassifierHead:
    """keras.applications' top: global average pool (named `pool_name`), optional dropout, Logits, Predictions."""

    pool_name: str = "global_pool"
    dropout: Optional[tuple] = None  # (rate, layer name)

    def __call__(self, x, net):
        return heads.classifier(x, net.classes, net.classifier_activation, net.initializer, pool_name=self.pool_name,
                                dropout=self.dropout)


@dataclasses.dataclass(frozen=True)
class SideHead:
    """A second classifier on an endpoint (slim's AuxLogits); the model then outputs [Predictions, side]."""

    endpoint: str
    build: Callable  # (feature map, net) -> output


def build_model(model_name, body, *, include_top, weights, input_tensor, input_shape, pooling, classes,
                classifier_activation, name, final_endpoint=None, initializer="glorot_uniform",
                head=ClassifierHead(), side_head=None, check_shape=None):
    """Builds registered model `model_name` from `body(x, net)`, a generator of `(endpoint, tensor)`.

    `final_endpoint` (default: the last) truncates after that endpoint;
    `check_shape(shape)` runs a family's own checks on the resolved input shape.
    """
    config = registry.get_config(model_name)
    final_endpoint = config.endpoints[-1] if final_endpoint is None else final_endpoint
    check_final_endpoint(final_endpoint, config.endpoints, include_top)
    if side_head is not None and not include_top:
        raise ValueError(f"a side head ({side_head.endpoint}) adds a second classifier and needs include_top=True")
    shape = validate_common(include_top=include_top, weights=weights, input_shape=input_shape,
                            input_tensor=input_tensor, pooling=pooling, classes=classes, config=config)
    if check_shape is not None:
        check_shape(shape)
    source = weights_lib.resolve(weights, config, include_top, shape)
    # Layers a weights file will fill start at zero: random draws (slim's truncated normals) would cost a
    # third of the build time for nothing.
    net = Net(include_top, classes, classifier_activation, initializer if source is None else "zeros")

    inputs, source_inputs = make_input(shape, input_tensor)
    features, x = {}, inputs
    for endpoint, x in body(inputs, net):
        features[endpoint] = x
        if endpoint == final_endpoint:
            break
    if include_top:
        x = head(x, net)
    else:
        x = heads.global_pooling(x, pooling, avg_name=getattr(head, "pool_name", "global_pool"))
    outputs = x if side_head is None else [x, side_head.build(features[side_head.endpoint], net)]
    model = functional(inputs if source_inputs is None else source_inputs, outputs, name=name)
    weights_lib.load(model, source, config)
    return model


def registered_builder(model_name, body, display_name, initializer, doc):
    """A builder with keras.applications' arguments plus `final_endpoint`, for a family whose models differ only
    in their data: `body(x, net)` as for `build_model`; `doc` is its docstring."""

    def builder(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
                classifier_activation="softmax", name=display_name, final_endpoint=None):
        return build_model(model_name, body, include_top=include_top, weights=weights, input_tensor=input_tensor,
                           input_shape=input_shape, pooling=pooling, classes=classes,
                           classifier_activation=classifier_activation, name=name, final_endpoint=final_endpoint,
                           initializer=initializer)

    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = doc
    return builder


def choose_variant(model_name, variant, weights, variants):
    """The architecture to build: `variant` as given (one of `variants`), else the one `weights` are written
    for: "torchvision" for a PyTorch state dict or a published set in PyTorch's layout, `variants[0]` (the
    family's own) for anything else. Weights are resolved before the model is built, so the file decides."""
    if variant is None:
        return "torchvision" if "torchvision" in variants and _torch_layout(model_name, weights) else variants[0]
    if variant not in variants:
        raise ValueError(f"variant must be None (chosen by the weights) or one of {variants}, got variant={variant!r}")
    return variant


def _torch_layout(model_name, weights):
    """Whether `weights` are in PyTorch's layout: a state dict file, or a published set written in it."""
    from kerasnets.weights import pytorch

    if not isinstance(weights, (str, os.PathLike)):
        return False
    config = registry.get_config(model_name)
    if isinstance(weights, str) and weights in config.weight_tags:
        return config.pretrained(weights).layout == "torch"
    return pytorch.is_torch_file(weights)


# ---- validation ------------------------------------------------------------------------------------------


def check_number(name, value, low=0, high=None, integer=False, low_inclusive=False):
    """`value` must be a number (an int if `integer`) above `low` (and below `high`)."""
    kinds = (int,) if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, kinds)
    ok = ok and (value >= low if low_inclusive else value > low) and (high is None or value < high)
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} {bound}, got {name}={value!r}")


def check_flag(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {name}={value!r}")


def validate_common(*, include_top, weights, input_shape, input_tensor, pooling, classes, config):
    """Checks the keras.applications-style arguments shared by all builders.

    Returns `(height, width, channels)` of the input (height/width may be None).
    """
    check_flag("include_top", include_top)
    if pooling not in heads.POOLING_CHOICES:
        raise ValueError(f"pooling must be one of {heads.POOLING_CHOICES}, got pooling={pooling!r}")
    if include_top and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise ValueError(f"classes must be a positive integer with include_top=True, got classes={classes!r}")
    check_weights_argument(weights, config)
    shape = resolve_input_shape(input_shape, input_tensor, config)
    if isinstance(weights, str) and weights in config.weight_tags:
        published = config.pretrained(weights)
        if shape[2] != 3:
            raise ValueError(
                f"weights={weights!r} needs 3 input channels (RGB); got input_shape={tuple(shape)}. "
                "Use weights=None for other channel counts."
            )
        allowed = {published.classes, published.classes - published.label_offset}
        if include_top and classes not in allowed:
            choices = " or ".join(str(c) for c in sorted(allowed, reverse=True))
            raise ValueError(
                f"weights={weights!r} with include_top=True predicts {choices} classes; got "
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


def check_weights_argument(weights, config):
    """`weights` must be None, a published tag, or a path that exists (or a checkpoint prefix)."""
    if weights is None or (isinstance(weights, str) and weights in config.weight_tags):
        return
    tags = ", ".join(repr(t) for t in config.weight_tags)
    valid = f"None, {tags + ', ' if tags else ''}or the path of a weights file or TF checkpoint"
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be {valid}, got weights={weights!r}")
    path = os.fspath(weights)
    if not (os.path.exists(path) or os.path.exists(path + ".index")):
        if path == "imagenet":
            raise ValueError(f"weights='imagenet': no published weights for model {config.name!r}; "
                             "use None or a file you trained")
        raise FileNotFoundError(
            f"weights={path!r}: no such file, directory or TF checkpoint prefix. Valid: {valid} (a "
            "keras.applications .h5, a Keras .weights.h5/.keras file, a PyTorch .pth/.safetensors state dict, "
            "or a TF-slim checkpoint prefix, the path before .index)."
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
