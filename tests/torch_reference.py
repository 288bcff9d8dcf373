"""The PyTorch libraries that publish weights, as references: torchvision and timm building their own models.

torchvision's wheels on the package index are built against the CUDA build of torch; beside the CPU build its
compiled operators (nms, roi_align: detection ops) do not load, and `import torchvision` fails where it registers
their shapes (`torchvision._meta_registrations`). The classification models use none of them, so that one module
is replaced by an empty one before the import.
"""

import sys
import types

import numpy as np


def torchvision():
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision as tv

    return tv


def reference_model(library, name, seed=0):
    """`name` built by `library` ("torchvision" or "timm") with random weights and random batch-norm statistics,
    in eval mode."""
    import torch

    torch.manual_seed(seed)
    if library == "torchvision":
        model = getattr(torchvision().models, name)()
    else:
        torchvision()  # timm imports it
        import timm

        model = timm.create_model(name, pretrained=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
    return model.eval()


def logits(model, images):
    """The reference's logits for NHWC float images (already normalised)."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))).numpy()
