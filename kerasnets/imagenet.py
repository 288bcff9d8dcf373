"""ImageNet helpers in keras.applications' style, for any registered model."""

import os

# ImageNet-1k's class names in class-index order (0 "tench", 1 "goldfish", ...): torchvision's categories (its
# weights' `meta["categories"]`), the names made unique where WordNet repeats a lemma ("crane" the bird, 134, and
# the machine, 517; "maillot" and "maillot tank suit", 638 and 639). Shipped with the package, so an export names
# its classes without a download. keras.applications' `decode_predictions` (which `decode_predictions` below
# calls) names them its own way: "great_white_shark", "crane" twice.
CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.txt")


def class_names(background=False):
    """ImageNet-1k's 1000 class names in index order; with `background=True` TF-slim's 1001, "background" first."""
    with open(CLASSES_FILE, encoding="utf8") as f:
        names = [line.rstrip("\n") for line in f]
    return ["background", *names] if background else names


def preprocess_input(x, data_format=None, model="inception_v3", weights=None):
    """Normalises RGB pixels in [0, 255] as registered `model`'s weights expect.

    The default is Inception v3's (scaled to [-1, 1]), so
    `kerasnets.preprocess_input` matches `keras.applications.inception_v3`;
    pass `model=` for another (`get_config(model).preprocessing` says which
    of keras.applications' modes it uses) and `weights=` for one of its
    published sets that differs (slim's VGG: `"imagenet_slim"`, "rgb_mean").
    """
    from kerasnets import build, registry
    from kerasnets.layers.preprocessing import preprocess_input as normalise

    config = registry.get_config(model)
    build.check_weights_argument(weights, config)  # a misspelt tag is an error, not another normalisation
    return normalise(x, config.preprocessing_for(weights), data_format=data_format)


def decode_predictions(preds, top=5):
    """ImageNet class names for a (batch, 1000) output -- keras.applications' decoder -- or a (batch, 1001)
    TF-slim output, whose background column 0 is dropped."""
    import keras

    if preds.shape[-1] == 1001:
        preds = preds[..., 1:]
    return keras.applications.imagenet_utils.decode_predictions(preds, top=top)
