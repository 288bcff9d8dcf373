"""Reader of PyTorch-published weights: torchvision `.pth` state dicts and timm/Hugging Face `.safetensors`.

A state dict names each tensor by module path and parameter
(`layer1.0.conv2.weight`, `layer1.0.bn2.running_var`); a layout table maps our
layers to those module paths. PyTorch stores a convolution's kernel as
(out, in, height, width) and a linear layer's as (out, in); Keras as
(height, width, in, out) and (in, out). The architecture a layout implies
(symmetric padding, the stride in the 3x3 convolution, batch-norm epsilon
1e-5) is the builder's own: only families built that way have a table.

`.safetensors` needs only the `safetensors` package (its NumPy side); a `.pth`
needs torch, and is opened with `weights_only=True`: a state dict of tensors,
never an arbitrary pickle.
"""

import dataclasses
import difflib
import logging
import os

import numpy as np

logger = logging.getLogger("kerasnets")

SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# Keras variable -> PyTorch parameter of the same module.
_TORCH_PARAMETER = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                    "moving_mean": "running_mean", "moving_variance": "running_var"}
# Buffers PyTorch keeps that no Keras variable holds.
_IGNORED = ("num_batches_tracked",)


@dataclasses.dataclass(frozen=True)
class TorchLayout:
    """Our layer name -> the PyTorch module path holding its parameters (`block1.unit_1.bottleneck.conv2` ->
    `layer1.0.conv2`); `head`: the modules after the features (left out of a model without its top);
    `flattened`: our layers that read a flattened map -> the endpoint giving that map (PyTorch flattens
    channels first, Keras channels last, so their rows are reordered); `unused`: modules the published file
    carries that a model may lack (torchvision's auxiliary classifiers, which only serve training)."""

    modules: dict
    head: tuple = ("fc",)
    flattened: dict = dataclasses.field(default_factory=dict)
    unused: tuple = ()


def is_torch_file(path):
    return os.fspath(path).endswith(SUFFIXES)


def read_state_dict(path):
    """{key: float32 array} of a `.safetensors` file or a `.pth` state dict."""
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return {k: np.asarray(v, np.float32) if v.dtype.kind == "f" else v for k, v in load_file(path).items()}
        except (SafetensorError, OSError) as e:
            raise ValueError(f"weights={path!r} is not a readable .safetensors file ({e})") from None
    try:
        import torch
    except ImportError:
        raise ImportError(f"weights={path!r} is a PyTorch file: reading it needs torch (pip install torch), or "
                          "convert it to .safetensors, which needs only the safetensors package") from None
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"weights={path!r} is not a plain state dict (refused by torch.load(weights_only=True): "
                         f"{str(e).splitlines()[0]}). A whole pickled model is never unpickled here: save "
                         "model.state_dict() instead, or convert it to .safetensors") from None
    except (RuntimeError, OSError, EOFError) as e:
        raise ValueError(f"weights={path!r} is not a readable PyTorch file ({e})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint holding the state dict beside the optimiser's
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights={path!r} holds a {type(state).__name__}, not a state dict of tensors "
                         "({name: tensor}, as model.state_dict() gives)")
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def _to_keras(layer, variable, value, flattened_map=None):
    """A PyTorch tensor in the Keras variable's layout; `flattened_map`: the (height, width, channels) a fully
    connected layer's input was flattened from."""
    import keras

    if variable.name != "kernel":
        return value
    if flattened_map is not None and value.ndim == 2:  # (out, c * h * w) -> (h, w, c, out): a Dense or a Conv2D
        height, width, channels = flattened_map
        return value.reshape(-1, channels, height, width).transpose(2, 3, 1, 0)
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (channels * multiplier, 1, h, w) -> (h, w, channels, mult)
        multiplier = variable.shape[-1]
        return value.reshape(-1, multiplier, *value.shape[2:]).transpose(2, 3, 0, 1)
    if value.ndim == 4:  # (out, in / groups, h, w) -> (h, w, in / groups, out)
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2:  # (out, in) -> (in, out)
        return value.T
    return value


def read(model, path, layout):
    """{our layer: arrays} from the state dict at `path`; every key accounted for, or a named error."""
    state = read_state_dict(path)
    arrays, missing, used = {}, [], set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in layout.modules:
            raise ValueError(f"model {model.name!r} has a layer {layer.name!r} that its PyTorch layout does not map "
                             "(a model built with other options than the published architecture?)")
        module = layout.modules[layer.name]
        values = []
        for variable in layer.weights:
            key = f"{module}.{_TORCH_PARAMETER[variable.name]}"
            if key not in state:
                missing.append(key)
                continue
            used.add(key)
            source = layout.flattened.get(layer.name)
            shape = tuple(model.get_layer(source).output.shape[1:]) if source else None
            values.append(_to_keras(layer, variable, state[key], shape))
        arrays[layer.name] = values
    if missing:
        hint = _closest(missing[0], state)
        raise ValueError(f"weights={path!r} lacks {len(missing)} key(s) this model needs, first: {missing[:3]}"
                         f"{hint} (the file of another architecture?)")
    skipped = {f"{m}.{p}" for m in layout.head for p in ("weight", "bias")}  # unused by a model without its top
    unused = tuple(f"{m}." for m in layout.unused)
    unexpected = sorted(k for k in state if k not in used and k not in skipped and not k.endswith(_IGNORED)
                        and not k.startswith(unused))
    if unexpected:
        expected = {f"{layout.modules[layer.name]}.{_TORCH_PARAMETER[v.name]}" for layer in model.layers
                    if layer.name in layout.modules for v in layer.weights}
        raise ValueError(f"weights={path!r} has {len(unexpected)} key(s) this model does not, first: "
                         f"{unexpected[:3]}{_closest(unexpected[0], expected)} (the file of another architecture, "
                         "or a deeper or wider one?)")
    return arrays


def _closest(key, candidates):
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    return f"; the closest {'in the file' if isinstance(candidates, dict) else 'expected'} is {close[0]!r}" if close \
        else ""
