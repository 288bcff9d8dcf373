"""Reader of keras.applications' published legacy HDF5 files.

They list `layer_names` at the root; layers are named `conv2d_<i>`,
`batch_normalization_<i>`, `predictions`, ... A `KerasApplicationsLayout`
(built in `layouts`) maps those names to ours.
"""

import dataclasses
import re
from typing import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class KerasApplicationsLayout:
    """keras.applications' file: `table` maps its layer names to ours.

    Layers keras.applications leaves unnamed get Keras' automatic names
    (`conv2d_7`, or `conv2d`, `conv2d_1`, ... from Keras 3), whose numbers are
    offset by whatever was built before; the reader renumbers each kind in
    `auto_named` 1, 2, ... in creation order, as the published files have them.
    """

    table: Mapping[str, str]
    auto_named: tuple = ("conv2d", "batch_normalization")


def _number(name):
    # Keras names the i-th layer of a kind `kind_i` (the first plain `kind` in Keras 3).
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def _canonical_names(names, auto_named):
    """Renumbers automatically named layers 1, 2, ... per kind, in creation order."""
    canonical = {name: name for name in names}
    for kind in auto_named:
        pattern = re.compile(rf"^{kind}(_\d+)?$")
        same_kind = sorted((n for n in names if pattern.match(n)), key=_number)
        for rank, name in enumerate(same_kind, start=1):
            canonical[name] = f"{kind}_{rank}"
    return canonical


def read(model, path, layout):
    import h5py
    import keras

    with h5py.File(path, "r") as f:
        stored = {}
        for name in _attr_strings(f.attrs["layer_names"]):
            weight_names = _attr_strings(f[name].attrs.get("weight_names", []))
            if weight_names:
                stored[name] = {wn.split("/")[-1].split(":")[0]: np.asarray(f[name][wn]) for wn in weight_names}
    stored = {canonical: stored[name] for name, canonical in _canonical_names(list(stored), layout.auto_named).items()}
    extra = [name for name in stored if name not in layout.table]
    if extra:
        raise ValueError(
            f"weights={path!r} has layer(s) {extra[:3]} that {model.name!r} does not have in keras.applications' "
            "layout: the file is of another architecture."
        )
    present = {layer.name for layer in model.layers}
    arrays = {}
    for file_name, layer_name in layout.table.items():
        if layer_name not in present:
            continue  # the file's classifier for a model without top, or a truncated model
        if file_name not in stored:
            raise ValueError(
                f"weights={path!r} has no weights for layer {layer_name!r} (keras.applications' {file_name!r})"
                + ("; build with include_top=False or use the file with the top." if file_name == "predictions"
                   else ": the file is of another architecture.")
            )
        layer = model.get_layer(layer_name)
        # Keras 2 named a depthwise convolution's kernel `depthwise_kernel`; Keras 3 names it `kernel`.
        aliases = {"kernel": "depthwise_kernel"} if isinstance(layer, keras.layers.DepthwiseConv2D) else {}
        try:
            arrays[layer_name] = [stored[file_name][aliases.get(v.name, v.name)] for v in layer.weights]
        except KeyError as e:
            raise ValueError(
                f"weights={path!r}: keras.applications' {file_name!r} has no {e.args[0]!r} for layer {layer_name!r}"
            ) from None
    return arrays


def _attr_strings(values):
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


