"""Walking a functional model's graph: the one module that reads Keras' node structure.

Keras 3 keeps a layer's calls as nodes (`layer._inbound_nodes`), each with the
Keras tensors it consumed, and each tensor knows the layer that made it
(`tensor._keras_history.operation`). Those attributes are private, so every
other module goes through these functions.
"""


def parents(layer, first_call_only=False):
    """The layers whose outputs `layer` consumes (of its first call only, if asked), in order."""
    nodes = layer._inbound_nodes[:1] if first_call_only else layer._inbound_nodes
    return [tensor._keras_history.operation for node in nodes for tensor in node.input_tensors]


def children(layer, members):
    """The layers of `members` (a {name: layer} map) that consume `layer`'s output."""
    return [node.operation for node in layer._outbound_nodes if node.operation.name in members]


def ancestors(layer):
    """{name: layer} of every layer `layer` depends on, itself included."""
    seen, stack = {}, [layer]
    while stack:
        current = stack.pop()
        if current.name not in seen:
            seen[current.name] = current
            stack.extend(parents(current))
    return seen


def layers_in_network_order(model):
    """`model.layers` sorted by their longest path from the input (ties: Keras' order).

    `model.layers` is sorted by distance to the *output*, which interleaves
    side heads (AuxLogits) with the trunk; this order follows the builder's.
    """
    depth = {}
    for layer in model.layers:
        depth[layer.name] = 1 + max((depth.get(p.name, 0) for p in parents(layer)), default=-1)
    index = {layer.name: i for i, layer in enumerate(model.layers)}
    return sorted(model.layers, key=lambda layer: (depth[layer.name], index[layer.name]))


def model_after(model, layer, name=None):
    """A keras.Model from `layer`'s output to `model`'s outputs, sharing `model`'s layers (and weights).

    Keras builds a model that starts inside another by copying the graph's
    nodes onto the same layers, so every later layer would appear called twice
    (and `parents`/`children` would say so, here and in `model`); those added
    nodes are taken off the layers again, even when building fails. The result
    is for calling, loading weights into and tracing for export: with its nodes
    gone from the layers, its `get_config`, `save` and a model built on its
    tensors fail.
    """
    import keras

    operations = model.operations
    kept = {id(op): (len(op._inbound_nodes), len(op._outbound_nodes)) for op in operations}
    try:
        return keras.Model(layer.output, model.output, name=name)
    finally:
        for op in operations:
            inbound, outbound = kept[id(op)]
            del op._inbound_nodes[inbound:], op._outbound_nodes[outbound:]
