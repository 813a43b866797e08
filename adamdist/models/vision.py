"""Vision models of the paper's section 5 and appendix A, in their CIFAR (32x32) form.

The paper trains RegNetX-200MF on CIFAR-10 (section 5.1) and, in appendix A.2,
VGG, ResNet-18, ShuffleNet-V2, ResNeXt-29, MobileNet, EfficientNet-B0 and
DenseNet-121; section 6.1 mentions a 4-layer CNN on MNIST. The ImageNet
networks of :mod:`torchvision.models` shrink a 224x224 image 32-fold before the
classifier, which would leave a 32x32 CIFAR image at 1x1 pixel after the stem.
The usual CIFAR adaptation (as in the widely used ``kuangliu/pytorch-cifar``
implementations) keeps the building blocks and replaces the stem by a 3x3,
stride-1 convolution without max-pooling. That is what every builder here does,
reusing torchvision's blocks wherever torchvision has them.

Use :func:`vision_model` to build any of them by name; :data:`ARCHITECTURES`
lists the names.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import regnet as tv_regnet
from torchvision.ops.misc import Conv2dNormActivation

from .._validation import check_int

__all__ = [
    "ARCHITECTURES",
    "vision_model",
    "regnetx_200mf",
    "vgg_cifar",
    "resnet18_cifar",
    "shufflenet_v2_cifar",
    "resnext29_cifar",
    "mobilenet_v2_cifar",
    "efficientnet_b0_cifar",
    "densenet121_cifar",
    "mnist_cnn",
    "count_parameters",
]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (entries of tensors with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _SmallImageStem(Conv2dNormActivation):
    """3x3 convolution, stride 1, BN, activation: a RegNet stem for 32x32 inputs.

    Same signature as torchvision's ``SimpleStemIN`` (which uses stride 2), so
    it can be passed to :class:`torchvision.models.regnet.RegNet` as ``stem_type``.
    """

    def __init__(self, width_in: int, width_out: int, norm_layer: Callable[..., nn.Module],
                 activation_layer: Callable[..., nn.Module]) -> None:
        super().__init__(width_in, width_out, kernel_size=3, stride=1,
                         norm_layer=norm_layer, activation_layer=activation_layer)


def regnetx_200mf(num_classes: int = 10) -> nn.Module:
    """RegNetX-200MF for 32x32 inputs (Radosavovic et al., 2020), CIFAR variant.

    Depths ``[1, 1, 4, 7]``, widths ``[24, 56, 152, 368]``, group width 8,
    bottleneck ratio 1, no squeeze-excitation, stage strides ``[1, 1, 2, 2]``
    and a 64-channel 3x3 stride-1 stem: the configuration of the reference
    CIFAR implementation (``kuangliu/pytorch-cifar``, ``RegNetX_200MF``), built
    from torchvision's :class:`~torchvision.models.regnet.RegNet`,
    :class:`~torchvision.models.regnet.BlockParams` and
    :class:`~torchvision.models.regnet.ResBottleneckBlock`.

    It has 2,321,946 parameters for 10 classes, the count of the reference
    implementation (about 2.32M); torchvision's ImageNet RegNetX-200MF differs
    in its stem and strides only, its blocks are the same.
    """
    check_int(num_classes, "num_classes", low=1)
    params = tv_regnet.BlockParams(
        depths=[1, 1, 4, 7],
        widths=[24, 56, 152, 368],
        group_widths=[8, 8, 8, 8],
        bottleneck_multipliers=[1.0, 1.0, 1.0, 1.0],
        # the reference CIFAR model keeps full resolution in the first two stages
        strides=[1, 1, 2, 2],
        se_ratio=None,
    )
    return tv_regnet.RegNet(params, num_classes=num_classes, stem_width=64, stem_type=_SmallImageStem,
                            block_type=tv_regnet.ResBottleneckBlock)


def vgg_cifar(depth: int = 11, num_classes: int = 10) -> nn.Module:
    """VGG-11/13/16/19 with batch norm (Simonyan & Zisserman, 2014) for 32x32 inputs.

    torchvision's convolutional ``features`` are kept; five max-pools take 32x32
    to 1x1, so the 4096-wide ImageNet classifier (and the 7x7 average pool) is
    replaced by one linear layer on the 512 features, as in the usual CIFAR VGG.
    """
    builders = {11: tvm.vgg11_bn, 13: tvm.vgg13_bn, 16: tvm.vgg16_bn, 19: tvm.vgg19_bn}
    if depth not in builders:
        raise ValueError(f"depth must be one of {sorted(builders)}, got {depth!r}")
    check_int(num_classes, "num_classes", low=1)
    net = builders[depth](weights=None)
    net.avgpool = nn.Identity()
    net.classifier = nn.Linear(512, num_classes)
    return net


def resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """ResNet-18 (He et al., 2016) with a 3x3 stride-1 stem and no max-pool."""
    check_int(num_classes, "num_classes", low=1)
    net = tvm.resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def shufflenet_v2_cifar(num_classes: int = 10) -> nn.Module:
    """ShuffleNet-V2 1.0x (Ma et al., 2018) with a 3x3 stride-1 stem and no max-pool."""
    check_int(num_classes, "num_classes", low=1)
    net = tvm.shufflenet_v2_x1_0(weights=None, num_classes=num_classes)
    net.conv1 = nn.Sequential(nn.Conv2d(3, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
    net.maxpool = nn.Identity()
    return net


class _ResNeXt29(nn.Module):
    """ResNeXt-29: a 3x3 stem and three stages of three grouped bottlenecks.

    The blocks are torchvision's :class:`~torchvision.models.resnet.Bottleneck`
    with ``groups = cardinality`` and ``base_width = bottleneck_width``; with
    ``planes = 64, 128, 256`` the grouped 3x3 convolutions are
    ``cardinality * bottleneck_width * (1, 2, 4)`` wide and the stage outputs
    256, 512, 1024, as in Xie et al. (2017) for CIFAR.
    """

    def __init__(self, cardinality: int, bottleneck_width: int, num_classes: int) -> None:
        super().__init__()
        block = tvm.resnet.Bottleneck
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        stages, inplanes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2)):
            blocks = []
            for i in range(3):
                s = stride if i == 0 else 1
                down = None
                if s != 1 or inplanes != planes * block.expansion:
                    down = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, s, bias=False),
                                         nn.BatchNorm2d(planes * block.expansion))
                blocks.append(block(inplanes, planes, s, down, groups=cardinality, base_width=bottleneck_width))
                inplanes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnext29_cifar(cardinality: int = 2, bottleneck_width: int = 32, num_classes: int = 10) -> nn.Module:
    """ResNeXt-29 (Xie et al., 2017), ``cardinality x bottleneck_width`` d.

    The default 2x32d is the smaller sibling of the common 2x64d: the 2x64d
    model costs about 1.4 GFLOPs per image, too much for the book's CPU
    profile, and the paper does not say which width it used.
    """
    check_int(cardinality, "cardinality", low=1)
    check_int(bottleneck_width, "bottleneck_width", low=1)
    check_int(num_classes, "num_classes", low=1)
    return _ResNeXt29(cardinality, bottleneck_width, num_classes)


def mobilenet_v2_cifar(num_classes: int = 10) -> nn.Module:
    """MobileNet-V2 (Sandler et al., 2018) for 32x32 inputs.

    torchvision's model with a stride-1 first convolution and stride 1 in the
    second inverted-residual stage (24 channels), the usual CIFAR adaptation
    that leaves a 4x4 map before pooling.
    """
    check_int(num_classes, "num_classes", low=1)
    setting = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2],
               [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
    net = tvm.MobileNetV2(num_classes=num_classes, inverted_residual_setting=setting)
    net.features[0] = Conv2dNormActivation(3, 32, kernel_size=3, stride=1, norm_layer=nn.BatchNorm2d,
                                           activation_layer=nn.ReLU6)
    return net


def efficientnet_b0_cifar(num_classes: int = 10) -> nn.Module:
    """EfficientNet-B0 (Tan & Le, 2019) with a stride-1 stem (32x32 -> 2x2 before pooling)."""
    check_int(num_classes, "num_classes", low=1)
    net = tvm.efficientnet_b0(weights=None, num_classes=num_classes)
    net.features[0] = Conv2dNormActivation(3, 32, kernel_size=3, stride=1, norm_layer=nn.BatchNorm2d,
                                           activation_layer=nn.SiLU)
    return net


def densenet121_cifar(num_classes: int = 10) -> nn.Module:
    """DenseNet-121 (Huang et al., 2017) with a 3x3 stride-1 stem and no max-pool."""
    check_int(num_classes, "num_classes", low=1)
    net = tvm.densenet121(weights=None, num_classes=num_classes)
    net.features.conv0 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.features.pool0 = nn.Identity()
    return net


class _MnistCNN(nn.Module):
    """Two convolutions and two fully connected layers (PyTorch's MNIST example net)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def mnist_cnn(num_classes: int = 10) -> nn.Module:
    """The 4-layer CNN for 1x28x28 MNIST digits (section 6.1, appendix).

    ``conv(1->32, 3x3) - ReLU - conv(32->64, 3x3) - ReLU - maxpool 2 -
    fc(9216->128) - ReLU - fc(128->classes)``: the network of PyTorch's MNIST
    example, 1,199,882 parameters. The paper gives only "a simple 4-layer CNN";
    this is the standard one of that shape.
    """
    check_int(num_classes, "num_classes", low=1)
    return _MnistCNN(num_classes)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "regnetx_200mf": regnetx_200mf,
    "vgg11": partial(vgg_cifar, 11),
    "vgg16": partial(vgg_cifar, 16),
    "resnet18": resnet18_cifar,
    "shufflenet_v2": shufflenet_v2_cifar,
    "resnext29_2x32d": partial(resnext29_cifar, 2, 32),
    "resnext29_2x64d": partial(resnext29_cifar, 2, 64),
    "mobilenet_v2": mobilenet_v2_cifar,
    "efficientnet_b0": efficientnet_b0_cifar,
    "densenet121": densenet121_cifar,
    "mnist_cnn": mnist_cnn,
}
"""Names accepted by :func:`vision_model` and their builders."""


def vision_model(name: str, num_classes: int = 10) -> nn.Module:
    """Build a vision model by name (see :data:`ARCHITECTURES`).

    Parameters
    ----------
    name : str
        One of ``regnetx_200mf, vgg11, vgg16, resnet18, shufflenet_v2,
        resnext29_2x32d, resnext29_2x64d, mobilenet_v2, efficientnet_b0,
        densenet121`` (3x32x32 inputs) or ``mnist_cnn`` (1x28x28 inputs).
    num_classes : int
        Size of the output layer.

    Returns
    -------
    torch.nn.Module
        Freshly initialised (torchvision's default initialisation; seed torch
        before calling for a reproducible model).
    """
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](num_classes=num_classes)
