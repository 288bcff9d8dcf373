"""Training recipes as data: optimizer, learning rate, schedule, warm-up, weight decay, label smoothing,
augmentation.

A run resolves its recipe once (`resolve`), prints it and writes it to
`run.json`. The defaults are what the field uses for short runs today:

* `scratch`: AdamW (Loshchilov & Hutter 2019), a linear warm-up then cosine
  decay to zero (Goyal et al. 2017; Loshchilov & Hutter 2017), decoupled
  weight decay 0.05 and label smoothing 0.1 (Szegedy et al. 2016), as in
  timm's and DeiT's recipes. Adaptive steps suit networks with and without
  batch norm alike: in 8 epochs on scikit-learn's digits, NIN as published
  (none) reaches 0.94-0.96 test accuracy and resnet18 0.98-0.99.
  Augmentation is mild: random crops of at least half the image and no
  flips, because flips change the label of digits, text and signs (on
  scikit-learn's digits, flips cost NIN 11 points of accuracy: 0.86 against
  0.97) and ImageNet's 8 % crops leave a small image unrecognisable.
* `fine-tune`: the same at a quarter of the learning rate and with no
  warm-up: a pretrained backbone is not re-randomised by large early steps,
  and the run starts learning at once. (A resnet18 trained on digits 0-4 and
  fine-tuned for 3 epochs on 5-9 reached 0.93 / 0.995 / 0.97 test accuracy
  at 2e-4 / 5e-4 / 1e-3.)
* `slim-imagenet`: TF-slim's train_image_classifier recipe for Inception v3
  on ImageNet (RMSProp, decay 0.9, momentum 0.9, epsilon 1.0, learning rate
  0.01 times 0.94 every 2 epochs, weight decay 4e-5) with Inception's
  augmentation (crops of 8-100 % of the image, flips). It needs hundreds of
  epochs' worth of steps; on a small data set it stays at chance.
* `train-head`: for a frozen backbone (`--freeze-backbone`): only the new
  classifier learns, from random weights, so at the scratch learning rate,
  without warm-up. (Three epochs on digits 5-9 over a backbone trained on
  0-4: 0.35 test accuracy at 5e-4, 0.55 at 2e-3.)

`auto` picks `train-head` for a frozen backbone, `fine-tune` for any other
run that starts from trained weights and `scratch` otherwise. Any field can
be overridden (`--optimizer`, `--lr`, ...).
"""

import dataclasses
import math

OPTIMIZERS = ("adamw", "adam", "rmsprop", "sgd")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a run optimises. `warmup_epochs` is capped at a tenth of the run."""

    name: str
    optimizer: str
    learning_rate: float
    schedule: str  # "cosine": warm-up then cosine to 0; "step": x decay_rate every decay_epochs (slim)
    warmup_epochs: float
    weight_decay: float
    label_smoothing: float
    min_crop_area: float  # random resized crops cover min_crop_area..1 of the image
    flip: bool  # random horizontal flips
    decay_rate: float = 0.94
    decay_epochs: float = 2.0

    def describe(self):
        schedule = ("cosine decay to 0" if self.schedule == "cosine"
                    else f"x{self.decay_rate} every {self.decay_epochs:g} epochs")
        return (f"recipe {self.name}: {self.optimizer} lr {self.learning_rate:g}, {schedule}, "
                f"warm-up {self.warmup_epochs:g} epoch(s), weight decay {self.weight_decay:g}, "
                f"label smoothing {self.label_smoothing:g}, crops of >= {self.min_crop_area:g} of the image, "
                f"{'flips' if self.flip else 'no flips'}")


RECIPES = {
    "scratch": Recipe("scratch", "adamw", 2e-3, "cosine", warmup_epochs=1.0, weight_decay=0.05,
                      label_smoothing=0.1, min_crop_area=0.5, flip=False),
    "fine-tune": Recipe("fine-tune", "adamw", 5e-4, "cosine", warmup_epochs=0.0, weight_decay=0.05,
                        label_smoothing=0.1, min_crop_area=0.5, flip=False),
    "train-head": Recipe("train-head", "adamw", 2e-3, "cosine", warmup_epochs=0.0, weight_decay=0.05,
                         label_smoothing=0.1, min_crop_area=0.5, flip=False),
    "slim-imagenet": Recipe("slim-imagenet", "rmsprop", 0.01, "step", warmup_epochs=0.0, weight_decay=4e-5,
                            label_smoothing=0.0, min_crop_area=0.08, flip=True),
}
CHOICES = ("auto", *RECIPES)


def resolve(name="auto", *, fine_tuning=False, frozen_backbone=False, epochs, optimizer=None, lr=None,
            weight_decay=None, label_smoothing=None, warmup_epochs=None, min_crop_area=None, flip=None):
    """The recipe `name` (`auto`: by `fine_tuning` and `frozen_backbone`), with fields overridden and checked."""
    if name not in CHOICES:
        raise ValueError(f"recipe must be one of {list(CHOICES)}, got recipe={name!r}")
    if name == "auto":
        name = "train-head" if frozen_backbone else "fine-tune" if fine_tuning else "scratch"
    recipe = RECIPES[name]
    overrides = {"optimizer": optimizer, "learning_rate": lr, "weight_decay": weight_decay,
                 "label_smoothing": label_smoothing, "warmup_epochs": warmup_epochs,
                 "min_crop_area": min_crop_area, "flip": flip}
    recipe = dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    if recipe.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got optimizer={recipe.optimizer!r}")
    if not 0 < recipe.learning_rate < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got lr={recipe.learning_rate!r}")
    if not recipe.weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got weight_decay={recipe.weight_decay!r}")
    if not 0 <= recipe.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got label_smoothing={recipe.label_smoothing!r}")
    if not recipe.warmup_epochs >= 0:
        raise ValueError(f"warmup_epochs must be >= 0, got warmup_epochs={recipe.warmup_epochs!r}")
    if not 0 < recipe.min_crop_area <= 1:
        raise ValueError(f"min_crop_area must be in (0, 1], got min_crop_area={recipe.min_crop_area!r}")
    return dataclasses.replace(recipe, warmup_epochs=min(recipe.warmup_epochs, epochs / 10))


def learning_rate_schedule(recipe, steps_per_epoch, epochs):
    """The recipe's schedule over the whole run (a resumed run continues it: the step count is restored)."""
    import keras  # here, not at the top: the CLI parses arguments without TensorFlow

    if recipe.schedule == "step":
        return keras.optimizers.schedules.ExponentialDecay(
            recipe.learning_rate, decay_steps=max(1, int(recipe.decay_epochs * steps_per_epoch)),
            decay_rate=recipe.decay_rate, staircase=True)
    total = max(1, steps_per_epoch * epochs)
    warmup = min(int(round(recipe.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(recipe.learning_rate, decay_steps=total)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=total - warmup, warmup_target=recipe.learning_rate,
                                                  warmup_steps=warmup)


def make_optimizer(recipe, steps_per_epoch, epochs):
    """The recipe's optimizer; weight decay spares biases and batch-norm parameters (as timm does)."""
    import keras  # here, not at the top: the CLI parses arguments without TensorFlow

    schedule = learning_rate_schedule(recipe, steps_per_epoch, epochs)
    decay = recipe.weight_decay or None
    if recipe.optimizer == "rmsprop":  # slim's settings
        optimizer = keras.optimizers.RMSprop(schedule, rho=0.9, momentum=0.9, epsilon=1.0, weight_decay=decay)
    elif recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=decay)
    elif recipe.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule, weight_decay=decay)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay)
    if decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
