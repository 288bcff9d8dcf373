"""Endpoints and features: the naming rule, and feature maps by name or by reduction.

The naming rule, in one place: an endpoint's layer carries the endpoint's bare
name (`Mixed_5b`, `block3`); every other layer is scoped with "." after slim's
"/" (`Mixed_5b.Branch_1.Conv2d_0b_5x5`). A model's endpoints are therefore its
layers without a "." in their name, in network order.

A registered model also declares its features as data (`FeatureInfo`, like
timm's `feature_info` and keras-hub's `pyramid_outputs`): per endpoint, its
channels and its reduction (the input's size over the feature map's) at the
model's default size. The conformance suite checks the declarations against
the built models.
"""

import dataclasses
import fractions

from kerasnets import graph

SCOPE_SEPARATOR = "."


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """One endpoint: its name, channels and reduction at the model's default size."""

    endpoint: str
    channels: int
    reduction: int


def scoped(*parts):
    """The layer name of a slim scope: `scoped("Mixed_5b", "Branch_1")` -> "Mixed_5b.Branch_1"."""
    return SCOPE_SEPARATOR.join(parts)


def is_endpoint_layer(layer):
    """Endpoint layers carry a bare name; inner layers are scoped with '.'."""
    import keras

    return SCOPE_SEPARATOR not in layer.name and not isinstance(layer, keras.layers.InputLayer)


def endpoints(model):
    """Names of the endpoints `model` has, in network order (input to output)."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"endpoints() needs a keras.Model, got {type(model).__name__}")
    return [layer.name for layer in graph.layers_in_network_order(model) if is_endpoint_layer(layer)]


def _scale(layer):
    """How many times smaller `layer` makes the map: its stride, 1/size for an upsampling (UpSampling2D, a
    strided Conv2DTranspose), None after global pooling."""
    import keras

    if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten,
                          keras.layers.Dense)):
        return None
    if isinstance(layer, (keras.layers.UpSampling2D, keras.layers.Conv2DTranspose)):
        factor = layer.size if isinstance(layer, keras.layers.UpSampling2D) else layer.strides
        return fractions.Fraction(1, max(_pair(factor)))
    return max(_pair(getattr(layer, "strides", 1)))


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def reductions(model):
    """{endpoint: reduction} of `model`, from its layers' strides and upsamplings (any input size; None after
    global pooling; a decoder's upsampling divides it, down to 1 at the input's resolution).

    Where paths meet, the coarsest reduction counts; a globally pooled path (None) that meets a spatial one
    (squeeze-and-excitation's channel scale) is broadcast over it.
    """
    reduction = {}
    for layer in graph.layers_in_network_order(model):
        parents = [reduction[p.name] for p in graph.parents(layer, first_call_only=True)]
        incoming = [r for r in parents if r is not None]
        if parents and not incoming:
            reduction[layer.name] = None
            continue
        scale = _scale(layer)
        base = max(incoming, default=1)
        reduction[layer.name] = None if scale is None else base * scale
    return {name: _plain(reduction[name]) for name in endpoints(model)}


def _plain(reduction):
    """An int where the reduction is whole (a Fraction only where a map is finer than the input)."""
    return int(reduction) if isinstance(reduction, fractions.Fraction) and reduction.denominator == 1 else reduction


def feature_extractor(model, endpoints=None, reductions=None, name=None):
    """A Model from `model`'s input to a dict {endpoint name: feature map}; shares `model`'s weights.

    Either `endpoints` (names; default all of them) or `reductions` (e.g.
    (4, 8, 16, 32): for each, the deepest endpoint whose feature map is that
    many times smaller than the input), not both.
    """
    from kerasnets.model import functional

    available = globals()["endpoints"](model)
    if reductions is not None:
        if endpoints is not None:
            raise ValueError("pass endpoints or reductions, not both")
        wanted = _deepest_at(model, reductions)
    else:
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
    return functional(inputs, outputs, name=name or f"{model.name}_features")


def _deepest_at(model, wanted):
    if isinstance(wanted, int):
        wanted = (wanted,)
    by_endpoint = globals()["reductions"](model)
    found = {}
    for endpoint, reduction in by_endpoint.items():  # network order: the deepest comes last
        if reduction is not None:
            found[reduction] = endpoint
    missing = [r for r in wanted if r not in found]
    if missing:
        raise ValueError(f"reductions={tuple(wanted)}: model {model.name!r} has no endpoint at reduction(s) "
                         f"{missing}; it has {sorted(found)}")
    return [found[r] for r in wanted]
