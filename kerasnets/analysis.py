"""Per-endpoint analysis of a model: output shape and parameters.

Each layer's parameters are counted at the first endpoint that depends on it,
so the rows add up to the model's total (branches of a module count at the
module; the aux head counts at AuxLogits).
"""

import json


from kerasnets import common


def _children(layer, members):
    for node in layer._outbound_nodes:
        if node.operation.name in members:
            yield node.operation


def summarize(model):
    """Rows {endpoint, output_shape, params}, in network order, then a `total` row."""
    names = common.endpoints(model)
    order = {name: i for i, name in enumerate(names)}
    members = {layer.name: layer for layer in model.layers}
    first_endpoint = {}
    # Walk from the output back to the input, so every child is known before its parents.
    for layer in reversed(common.layers_in_network_order(model)):
        candidates = [first_endpoint[c.name] for c in _children(layer, members) if c.name in first_endpoint]
        if layer.name in order:
            candidates.append(order[layer.name])
        if candidates:
            first_endpoint[layer.name] = min(candidates)
    params = [0] * len(names)
    for layer in model.layers:
        if layer.name in first_endpoint:
            params[first_endpoint[layer.name]] += layer.count_params() if layer.weights else 0
    rows = []
    for name, count in zip(names, params):
        shape = model.get_layer(name).output.shape
        rows.append({"endpoint": name, "output_shape": list(shape[1:]), "params": count})
    rows.append({"endpoint": "total", "output_shape": None, "params": model.count_params()})
    return rows


def format_table(rows):
    """An aligned text table of `summarize` rows."""
    def shape_text(shape):
        return "" if shape is None else "x".join("?" if d is None else str(d) for d in shape)

    lines = [("endpoint", "output_shape", "params")]
    lines += [(r["endpoint"], shape_text(r["output_shape"]), f"{r['params']:,}") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in lines)


def to_json(rows):
    return json.dumps(rows, indent=2)



