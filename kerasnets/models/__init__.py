"""The model zoo: one module per family, each its architecture as data plus its registered builders.

The builders are also at the package top (`kerasnets.resnet50`); the modules
live here (`kerasnets.models.resnet`), so no name means two things.
"""

FAMILIES = ("inception_v1", "inception_v2", "inception_v3", "inception_v4", "inception_resnet_v2", "xception",
            "resnet", "resnext", "vgg", "mobilenet_v1", "shufflenet_v2", "nin")
