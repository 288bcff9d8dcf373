"""Reader of Keras 3 `.weights.h5` and `.keras` files written from kerasnets models."""

import re
import warnings


def load(model, path, assign):
    """Loads a `.keras` archive by layer name, or a `.weights.h5` file as Keras does; `assign` sets checked arrays."""
    if path.endswith(".keras"):
        assign(model, _read_keras_archive(model, path), path)
        return
    # A `.weights.h5` file lists layers by kind and position, so a model that normalises raw pixels with a
    # weighted layer (caffe's channel flip, a 1x1 convolution) first tries the file on the network behind that
    # layer: the layout of a file saved from the bare builder.
    from kerasnets import graph
    from kerasnets.layers import PREPROCESS_NAME

    targets = [model]
    if any(layer.name == PREPROCESS_NAME and layer.weights for layer in model.layers):
        targets.insert(0, graph.model_after(model, model.get_layer(PREPROCESS_NAME)))
    errors = []
    for target in targets:
        try:
            return _load_weights_file(target, path)
        except ValueError as error:
            errors.append(error)
    raise ValueError(f"weights={path!r} does not fit model {model.name!r}: {errors[0]}")


def _load_weights_file(model, path):
    """`model.load_weights(path)`, with one ValueError for any mismatch."""
    # Keras warns once per part of the model the file has nothing for (dozens of lines for another
    # architecture), then raises or leaves those parts as initialised: either way, one error here.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as e:  # Keras raises ValueError/KeyError/OSError depending on the mismatch
            raise ValueError(str(e)) from None
    unfilled = [str(w.message) for w in caught if "retain their freshly-initialized weights" in str(w.message)]
    if unfilled:
        where = re.search(r"at '([^']+)'", unfilled[0])
        raise ValueError(f"{len(unfilled)} part(s) of the model found no weights in the file, first: "
                         f"{where.group(1) if where else unfilled[0]}")
    for w in caught:  # anything else Keras said is passed on
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _read_keras_archive(model, path):
    """Every weighted layer of `model`, by name, from the whole model saved in a `.keras` archive.

    By name rather than by position, so a trained classifier (e.g. a training
    run's model.keras, with its input normalisation and head) fills a backbone
    built without the top.
    """
    import keras

    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError/TypeError/KeyError depending on what is wrong
        raise ValueError(f"weights={path!r} is not a loadable .keras model: {e}") from None
    from kerasnets.layers import PREPROCESS_NAME

    available = {layer.name: layer for layer in source.layers}
    # The input normalisation is the model's own (a bare network's file has none), never the file's.
    wanted = [layer.name for layer in model.layers if layer.weights and layer.name != PREPROCESS_NAME]
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ValueError(f"weights={path!r} does not fit model {model.name!r}: the file has no layer "
                         f"{missing[0]!r} ({len(missing)} of {len(wanted)} weighted layers missing)")
    return {name: [keras.ops.convert_to_numpy(v) for v in available[name].weights] for name in wanted}
