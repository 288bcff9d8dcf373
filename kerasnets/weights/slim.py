"""Reader of TF-slim checkpoints (`InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/weights`)."""

import dataclasses
import logging

logger = logging.getLogger("kerasnets")

# Keras variable name -> slim variable name.
_SLIM_VARIABLE = {
    "kernel": "weights",
    "depthwise_kernel": "depthwise_weights",
    "pointwise_kernel": "pointwise_weights",
    "bias": "biases",
    "gamma": "gamma",
    "beta": "beta",
    "moving_mean": "moving_mean",
    "moving_variance": "moving_variance",
}


@dataclasses.dataclass(frozen=True)
class SlimLayout:
    """How a model's layers map to a TF-slim checkpoint.

    A layer `A.B.C` (or `A.B.C.Conv2D`) holds the variables of slim scope
    `<scope>/A/B/C`, unless `renamed` says otherwise. Slim's published
    classifiers score `label_offset` extra classes first (class 0,
    "background"): a model built with that many fewer classes drops them.
    Checkpoint variables the model has no layer for (the aux head of a model
    built without it) are skipped, with a log line.
    """

    scope: str
    renamed: dict
    classifiers: tuple  # our layers that hold class scores
    label_offset: int = 1
    op_suffix: str = ".Conv2D"

    def slim_scope(self, layer_name):
        if layer_name in self.renamed:
            return f"{self.scope}/{self.renamed[layer_name]}"
        base = layer_name[: -len(self.op_suffix)] if layer_name.endswith(self.op_suffix) else layer_name
        return f"{self.scope}/{base.replace('.', '/')}"



def read(model, prefix, layout):
    import keras
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as e:  # tf raises several types for unreadable checkpoints
        raise ValueError(f"weights={prefix!r} is not a readable TF checkpoint: {e}") from None
    shapes = reader.get_variable_to_shape_map()
    arrays, missing, used = {}, [], set()
    for layer in model.layers:
        if not layer.weights:
            continue
        scope = layout.slim_scope(layer.name)
        values = []
        for variable in layer.weights:
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D) and variable.name == "kernel"
            slim_name = f"{scope}/{'depthwise_weights' if depthwise else _SLIM_VARIABLE[variable.name]}"
            if slim_name not in shapes:
                missing.append(slim_name)
                continue
            used.add(slim_name)
            value = reader.get_tensor(slim_name)
            offset = layout.label_offset
            if layer.name in layout.classifiers and offset and value.shape[-1] == variable.shape[-1] + offset:
                value = value[..., offset:]
            values.append(value)
        arrays[layer.name] = values
    if missing:
        raise ValueError(
            f"weights={prefix!r} lacks {len(missing)} variable(s) this model needs, first: {missing[:5]} "
            "(a checkpoint of another architecture or depth?)"
        )
    extra = sorted(n for n in shapes if n.startswith(layout.scope + "/") and n not in used)
    if extra:
        logger.info("skipped %d checkpoint variable(s) the model does not have: %s%s", len(extra),
                    ", ".join(extra[:5]), " ..." if len(extra) > 5 else "")
    return arrays


