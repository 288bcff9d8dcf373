"""A segmentation model's scores on a split, computed here in NumPy from its predictions: the reference that
metrics.json is held to (Keras' `evaluate` weighs each batch's loss by its image count, and counts padding)."""

import numpy as np


def pixel_scores(model, eval_ds, classes, ignore=255):
    """{"loss": cross-entropy per counted pixel, "mean_iou": mean over classes of TP / (TP + FP + FN)} over every
    image of `eval_ds` once; pixels labelled `ignore` count in neither."""
    total, pixels = 0.0, 0
    confusion = np.zeros((classes, classes), np.int64)
    for images, masks in eval_ds:
        probabilities = model.predict(images, verbose=0).astype("float64")
        masks = np.asarray(masks).astype(np.int64)
        counted = masks != ignore
        truth = masks[counted]
        chosen = probabilities[counted]
        total -= np.log(np.clip(chosen[np.arange(len(truth)), truth], 1e-7, 1.0)).sum()
        pixels += len(truth)
        np.add.at(confusion, (truth, chosen.argmax(-1)), 1)
    hits = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - hits
    return {"loss": total / pixels, "mean_iou": float(np.mean(hits[union > 0] / union[union > 0]))}
