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


def reference_model(library, name, seed=0, he_kernels=False, **kwargs):
    """`name` built by `library` ("torchvision" or "timm") with random weights and random batch-norm statistics,
    in eval mode; `kwargs` go to torchvision's builder. `he_kernels` redraws every kernel at He et al.'s scale,
    so the input reaches the logits where the library's own initialisation does not let it (GoogLeNet's std
    0.01 leaves logits that are the batch norms' offsets whatever the image)."""
    import torch

    torch.manual_seed(seed)
    if library == "torchvision":
        model = getattr(torchvision().models, name)(**kwargs)
    else:
        torchvision()  # timm imports it
        import timm

        model = timm.create_model(name, pretrained=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if he_kernels and isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight, generator=generator)
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)
    return model.eval()


# torchvision's ImageNet normalisation of pixels in [0, 1]
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def logits(model, images):
    """The reference's logits for NHWC float images (already normalised)."""
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))).numpy()
