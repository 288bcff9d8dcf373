"""Per-endpoint analysis: output shape, parameters, multiply-adds, receptive field.

Each layer's parameters and multiply-adds are counted at the first endpoint
that depends on it, so the rows add up to the model's total (a module's
branches count at the module; the aux head at AuxLogits).

Multiply-adds (MACs) count convolutions -- grouped, depthwise and separable
too -- and dense layers: k_h * k_w * (c_in / groups) * c_out per output
position; a transposed convolution's per input position. Normalisation,
activations and pooling are not counted.

Receptive fields follow Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019: along a path,
r = 1 + sum_l (k_l - 1) * S_{l-1}, effective stride S = prod_l s_l, effective
padding P = sum_l p_l * S_{l-1} (p_l the layer's left/top padding, which TF's
"same" padding makes depend on the input size). Where paths meet (concatenate,
add) they must align -- same effective stride and the same centre
(r - 1) / 2 - P -- and the largest receptive field is kept, per axis. Where
they do not (TF's "same" padding pads stride-2 layers asymmetrically on
even-sized inputs, which shifts one path's centre against a 1x1 shortcut's),
there is no single receptive field: it and everything after it read
"unaligned". Values are per axis (height, width) when they differ; after
global pooling the field is the whole input (None).
"""

import json

import keras

from kerasnets import features, graph

UNALIGNED = "unaligned"
MACS_NOTE = ("MACs count convolutions (grouped/depthwise/separable/transposed) and dense layers; "
             "normalisation, activations and pooling are not counted.")
_MERGES = (keras.layers.Concatenate, keras.layers.Add, keras.layers.Multiply, keras.layers.Average,
           keras.layers.Maximum, keras.layers.Subtract)
_GLOBAL = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten,
           keras.layers.Dense)


def layer_macs(layer):
    """Multiply-adds of one call of `layer` (its first node) per example."""
    if isinstance(layer, keras.layers.Dense):
        return int(layer.input.shape[-1]) * layer.units
    if isinstance(layer, keras.layers.Conv2DTranspose):  # every input position scatters a kernel per output channel
        in_h, in_w, c_in = (int(d) for d in layer.input.shape[1:])  # channels last, as every kerasnets model
        kh, kw = layer.kernel_size
        return in_h * in_w * kh * kw * c_in * layer.filters
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
        return 0
    out_h, out_w = layer.output.shape[1:3]
    positions = int(out_h) * int(out_w)
    kh, kw = layer.kernel_size
    c_in = int(layer.input.shape[-1])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return kh * kw * c_in * layer.depth_multiplier * positions
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = kh * kw * c_in * layer.depth_multiplier
        return (depthwise + c_in * layer.depth_multiplier * layer.filters) * positions
    return kh * kw * (c_in // layer.groups) * layer.filters * positions


def _geometry(layer):
    """(kernel, stride, left padding) per axis of a spatial layer; None for pass-through layers."""
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, _), (left, _) = layer.padding
        return (1, 1), (1, 1), (top, left)
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
        kernel, strides, padding = layer.kernel_size, layer.strides, layer.padding
        dilation = layer.dilation_rate
        kernel = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        kernel, strides, padding = layer.pool_size, layer.strides, layer.padding
    else:
        return None
    pads = []
    for axis, (k, s) in enumerate(zip(kernel, strides)):
        if padding == "valid":
            pads.append(0)
            continue
        size = layer.input.shape[1 + axis]
        if size is None:
            pads.append((k - 1) // 2)
            continue
        out = -(-int(size) // s)
        pads.append(max((out - 1) * s + k - int(size), 0) // 2)
    return tuple(kernel), tuple(strides), tuple(pads)


def receptive_fields(model):
    """{layer name: (r, S, P) per axis as tuples, or None once global} for every layer."""
    fields = {}
    for layer in graph.layers_in_network_order(model):
        parents = [p.name for p in graph.parents(layer, first_call_only=True)]
        if not parents:
            fields[layer.name] = ((1, 1), (1, 1), (0, 0))
            continue
        incoming = [fields[p] for p in parents]
        if any(f is None for f in incoming) or isinstance(layer, _GLOBAL):
            fields[layer.name] = None
            continue
        if UNALIGNED in incoming:
            fields[layer.name] = UNALIGNED
            continue
        if isinstance(layer, _MERGES) and len(incoming) > 1:
            fields[layer.name] = _merge(incoming, layer.name)
            continue
        r, j, p = incoming[0]
        geometry = _geometry(layer)
        if geometry is not None:
            kernel, strides, pads = geometry
            r = tuple(ri + (k - 1) * ji for ri, k, ji in zip(r, kernel, j))
            p = tuple(pi + pad * ji for pi, pad, ji in zip(p, pads, j))
            j = tuple(ji * s for ji, s in zip(j, strides))
        fields[layer.name] = (r, j, p)
    return fields


def _merge(incoming, name):
    """Paths meeting at a merge: the largest field per axis, if they align."""
    strides = {f[1] for f in incoming}
    centres = {tuple((r - 1) / 2 - p for r, p in zip(f[0], f[2])) for f in incoming}
    if len(strides) > 1 or len(centres) > 1:
        return UNALIGNED
    largest = [max(incoming, key=lambda f: f[0][axis]) for axis in (0, 1)]
    return (tuple(largest[a][0][a] for a in (0, 1)), incoming[0][1], tuple(largest[a][2][a] for a in (0, 1)))


def _scalar(pair):
    return pair[0] if pair[0] == pair[1] else list(pair)


def summarize(model, input_size=None):
    """Rows {endpoint, output_shape, params, macs, receptive_field, effective_stride,
    effective_padding}, in network order, then a `total` row.

    `model` is a keras.Model or a registry name; with a name, `input_size`
    builds it at that square size (default: the model's own).
    """
    if isinstance(model, str):
        from kerasnets import registry

        config = registry.get_config(model)
        size = config.default_size if input_size is None else input_size  # a head's own input is open-sized
        shape = (size, size, 3)
        model = config.builder(weights=None, input_shape=shape)
    elif input_size is not None and tuple(model.input_shape[1:3]) != (input_size, input_size):
        raise ValueError(f"input_size={input_size} differs from the model's input {model.input_shape[1:3]}; "
                         "pass a registry name to build it at that size")
    names = features.endpoints(model)
    order = {name: i for i, name in enumerate(names)}
    members = {layer.name: layer for layer in model.layers}
    first_endpoint = {}
    # Walk from the output back to the input, so every child is known before its parents.
    for layer in reversed(graph.layers_in_network_order(model)):
        candidates = [first_endpoint[c.name] for c in graph.children(layer, members) if c.name in first_endpoint]
        if layer.name in order:
            candidates.append(order[layer.name])
        if candidates:
            first_endpoint[layer.name] = min(candidates)
    params, macs = [0] * len(names), [0] * len(names)
    for layer in model.layers:
        if layer.name in first_endpoint:
            params[first_endpoint[layer.name]] += layer.count_params() if layer.weights else 0
            macs[first_endpoint[layer.name]] += layer_macs(layer)
    fields = receptive_fields(model)
    rows = []
    for name, count, mac in zip(names, params, macs):
        field = fields[name]
        values = [field] * 3 if field in (None, UNALIGNED) else [_scalar(v) for v in field]
        rows.append({"endpoint": name, "output_shape": list(model.get_layer(name).output.shape[1:]),
                     "params": count, "macs": mac, "receptive_field": values[0], "effective_stride": values[1],
                     "effective_padding": values[2]})
    rows.append({"endpoint": "total", "output_shape": None, "params": model.count_params(),
                 "macs": sum(layer_macs(layer) for layer in model.layers), "receptive_field": None,
                 "effective_stride": None, "effective_padding": None})
    return rows


def format_table(rows):
    """An aligned text table of `summarize` rows, with the MACs note."""
    def text(value):
        if value is None:
            return "-"
        if isinstance(value, list):
            return "x".join("?" if d is None else str(d) for d in value)
        return f"{value:,}" if isinstance(value, int) else str(value)

    header = ("endpoint", "output_shape", "params", "macs", "receptive_field", "effective_stride",
              "effective_padding")
    lines = [header] + [tuple(text(row[key]) for key in header) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    body = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]
    return "\n".join(body + [MACS_NOTE, "Receptive field '-': after global pooling, the whole input; "
                                        "'unaligned': paths whose centres differ meet (see Araujo et al. 2019)."])


def to_json(rows):
    return json.dumps(rows, indent=2)


def check_plot_dependencies():
    """keras.utils.plot_model needs pydot and Graphviz's `dot`; say which is missing."""
    import shutil

    try:
        import pydot  # noqa: F401
    except ImportError:
        raise ValueError("--plot needs pydot (pip install pydot) and Graphviz (apt install graphviz)") from None
    if shutil.which("dot") is None:
        raise ValueError("--plot needs Graphviz's `dot` on PATH (apt install graphviz / brew install graphviz)")


def plot(model, path):
    """Draws `model` with keras.utils.plot_model."""
    check_plot_dependencies()
    keras.utils.plot_model(model, to_file=path, show_shapes=True, show_layer_names=True, dpi=72)
