"""Inception v4 with TF-slim's endpoints.

Reference:
  Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the
  Impact of Residual Connections on Learning", AAAI 2017
  (https://arxiv.org/abs/1602.07261), figures 3-8.

TF-slim's `nets/inception_v4.py` layer for layer: the stem of figure 3 (three
convolutions, then the paper's three filter concatenations `Mixed_3a`,
`Mixed_4a`, `Mixed_5a`), four Inception-A modules (`Mixed_5b`-`5e`), the
Reduction-A module `Mixed_6a`, seven Inception-B (`Mixed_6b`-`6h`), the
Reduction-B module `Mixed_7a` and three Inception-C (`Mixed_7b`-`7d`). Batch
norm without gamma, epsilon 0.001 (slim's inception_arg_scope). The
classifier is slim's: average pool `AvgPool_1a`, dropout `Dropout_1b`, fully
connected `Logits`; the optional auxiliary classifier reads `Mixed_6h`.
"""

import functools

from kerasnets import build, registry
from kerasnets.layers import blocks, inception
from kerasnets.layers.inception import Fork, avg_pool, conv, max_pool

DEFAULT_SIZE = 299
MIN_SIZE = 75
# slim's inception_arg_scope: variance_scaling_initializer() (2 / fan_in, truncated normal), batch norm without
# gamma, epsilon 0.001, decay 0.9997.
CONV_SETTINGS = blocks.ConvSettings(initializer="he_normal", batch_norm_epsilon=0.001, batch_norm_momentum=0.9997,
                                    batch_norm_scale=False)

STEM = (  # figure 3, to its first filter concatenation; sizes at 299x299
    ("Conv2d_1a_3x3", conv(None, 32, 3, strides=2, padding="valid")),  # 149x149x32
    ("Conv2d_2a_3x3", conv(None, 32, 3, padding="valid")),  # 147x147x32
    ("Conv2d_2b_3x3", conv(None, 64, 3)),  # 147x147x64
)
MIXED_3A = (  # 73x73x160
    ("Branch_0", (max_pool("MaxPool_0a_3x3"),)),
    ("Branch_1", (conv("Conv2d_0a_3x3", 96, 3, strides=2, padding="valid"),)),
)
MIXED_4A = (  # 71x71x192
    ("Branch_0", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_1a_3x3", 96, 3, padding="valid"))),
    ("Branch_1", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_0b_1x7", 64, (1, 7)), conv("Conv2d_0c_7x1", 64, (7, 1)),
                  conv("Conv2d_1a_3x3", 96, 3, padding="valid"))),
)
MIXED_5A = (  # 35x35x384
    ("Branch_0", (conv("Conv2d_1a_3x3", 192, 3, strides=2, padding="valid"),)),
    ("Branch_1", (max_pool("MaxPool_1a_3x3"),)),
)
INCEPTION_A = (  # figure 4: 35x35x384
    ("Branch_0", (conv("Conv2d_0a_1x1", 96, 1),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_0b_3x3", 96, 3))),
    ("Branch_2", (conv("Conv2d_0a_1x1", 64, 1), conv("Conv2d_0b_3x3", 96, 3), conv("Conv2d_0c_3x3", 96, 3))),
    ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", 96, 1))),
)
REDUCTION_A = (  # figure 7 with k=192, l=224, m=256, n=384: 17x17x1024
    ("Branch_0", (conv("Conv2d_1a_3x3", 384, 3, strides=2, padding="valid"),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_0b_3x3", 224, 3),
                  conv("Conv2d_1a_3x3", 256, 3, strides=2, padding="valid"))),
    ("Branch_2", (max_pool("MaxPool_1a_3x3"),)),
)
INCEPTION_B = (  # figure 5: 17x17x1024
    ("Branch_0", (conv("Conv2d_0a_1x1", 384, 1),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_0b_1x7", 224, (1, 7)),
                  conv("Conv2d_0c_7x1", 256, (7, 1)))),
    ("Branch_2", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_0b_7x1", 192, (7, 1)),
                  conv("Conv2d_0c_1x7", 224, (1, 7)), conv("Conv2d_0d_7x1", 224, (7, 1)),
                  conv("Conv2d_0e_1x7", 256, (1, 7)))),
    ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", 128, 1))),
)
REDUCTION_B = (  # figure 8: 8x8x1536
    ("Branch_0", (conv("Conv2d_0a_1x1", 192, 1), conv("Conv2d_1a_3x3", 192, 3, strides=2, padding="valid"))),
    ("Branch_1", (conv("Conv2d_0a_1x1", 256, 1), conv("Conv2d_0b_1x7", 256, (1, 7)),
                  conv("Conv2d_0c_7x1", 320, (7, 1)), conv("Conv2d_1a_3x3", 320, 3, strides=2, padding="valid"))),
    ("Branch_2", (max_pool("MaxPool_1a_3x3"),)),
)
INCEPTION_C = (  # figure 6: 8x8x1536
    ("Branch_0", (conv("Conv2d_0a_1x1", 256, 1),)),
    ("Branch_1", (conv("Conv2d_0a_1x1", 384, 1),
                  Fork((conv("Conv2d_0b_1x3", 256, (1, 3)), conv("Conv2d_0c_3x1", 256, (3, 1)))))),
    ("Branch_2", (conv("Conv2d_0a_1x1", 384, 1), conv("Conv2d_0b_3x1", 448, (3, 1)), conv("Conv2d_0c_1x3", 512, (1, 3)),
                  Fork((conv("Conv2d_0d_1x3", 256, (1, 3)), conv("Conv2d_0e_3x1", 256, (3, 1)))))),
    ("Branch_3", (avg_pool("AvgPool_0a_3x3"), conv("Conv2d_0b_1x1", 256, 1))),
)
MODULES = (
    ("Mixed_3a", MIXED_3A), ("Mixed_4a", MIXED_4A), ("Mixed_5a", MIXED_5A),
    *((f"Mixed_5{letter}", INCEPTION_A) for letter in "bcde"),
    ("Mixed_6a", REDUCTION_A),
    *((f"Mixed_6{letter}", INCEPTION_B) for letter in "bcdefgh"),
    ("Mixed_7a", REDUCTION_B),
    *((f"Mixed_7{letter}", INCEPTION_C) for letter in "bcd"),
)
AUX_INPUT = "Mixed_6h"


def _body(x, net):
    yield from inception.stem_and_modules(x, STEM, MODULES, CONV_SETTINGS.with_initializer(net.initializer))


def _aux_head(x, net):
    settings = CONV_SETTINGS.with_initializer(net.initializer)
    return inception.slim_aux_classifier(x, net, settings, "AuxLogits", "AvgPool_1a_5x5", "Conv2d_2a")


def inception_v4(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name="InceptionV4", final_endpoint="Mixed_7d",
                 aux_logits=False, dropout_rate=0.2):
    """Instantiates Inception v4 (Szegedy et al., AAAI 2017) with TF-slim's endpoints.

    Args:
      include_top, input_tensor, input_shape, pooling, classes,
        classifier_activation, name: as keras.applications (input at least
        75x75; default 299x299x3).
      weights: None; "imagenet" (TF-slim's published checkpoint, fetched and
        extracted); a TF-slim checkpoint prefix; or a Keras
        `.weights.h5`/`.keras` file written from a kerasnets model. Slim's
        checkpoints score 1001 classes (0 = background); with `classes=1000`
        that row is dropped.
      final_endpoint: truncate after this endpoint (only with
        include_top=False), like slim's `inception_v4_base`.
      aux_logits: add slim's auxiliary classifier on `Mixed_6h`; the model
        then outputs `[Predictions, AuxLogits]` (AuxLogits are logits). It
        needs a fixed input size of at least 107x107.
      dropout_rate: dropout before `Logits` (slim keeps 0.8: rate 0.2).
    """
    build.check_number("dropout_rate", dropout_rate, high=1, low_inclusive=True)
    build.check_flag("aux_logits", aux_logits)
    return build.build_model(
        "inception_v4", _body, include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        name=name, final_endpoint=final_endpoint, initializer=CONV_SETTINGS.initializer,
        head=build.ClassifierHead("AvgPool_1a", (dropout_rate, "Dropout_1b")),
        side_head=build.SideHead(AUX_INPUT, _aux_head) if aux_logits else None,
        check_shape=functools.partial(inception.check_aux_input, stem=STEM, modules=MODULES, aux_input=AUX_INPUT)
        if aux_logits else None)


CONFIG = registry.register(registry.ModelConfig(
    name="inception_v4", builder=inception_v4, family="inception_v4", paper="https://arxiv.org/abs/1602.07261",
    default_size=DEFAULT_SIZE, min_size=MIN_SIZE, features=inception.features(STEM, MODULES), params=42_711_400,
    macs=12_253_974_624,
    preprocessing="tf",
    weights=(registry.slim_weights("inception_v4_2016_09_09.tar.gz", "inception_v4.ckpt", input_size=DEFAULT_SIZE,
                                   top1=80.2),)))
