"""adamdist.models.vision: every architecture builds and maps a CIFAR/MNIST batch to 10 logits."""

import pytest

torch = pytest.importorskip("torch")

from adamdist.models import mnist_cnn, regnetx_200mf, vision_model  # noqa: E402
from adamdist.models.vision import ARCHITECTURES, count_parameters  # noqa: E402

# Parameter counts for 10 classes, printed by test_forward_shape_and_parameter_count (run with -s).
# RegNetX-200MF: kuangliu/pytorch-cifar's RegNetX_200MF has the same configuration and 2,321,946
# parameters (about 2.32M); ours is built from torchvision's RegNet blocks and has exactly that many.
EXPECTED_PARAMETERS = {
    "regnetx_200mf": 2_321_946,
    "vgg11": 9_231_114,
    "vgg16": 14_728_266,
    "resnet18": 11_173_962,
    "shufflenet_v2": 1_263_854,
    "resnext29_2x32d": 3_753_034,
    "resnext29_2x64d": 9_130_314,
    "mobilenet_v2": 2_236_682,
    "efficientnet_b0": 4_020_358,
    "densenet121": 6_956_426,
    "mnist_cnn": 1_199_882,
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_shape_and_parameter_count(name):
    torch.manual_seed(0)
    model = vision_model(name).eval()
    shape = (2, 1, 28, 28) if name == "mnist_cnn" else (2, 3, 32, 32)
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert tuple(out.shape) == (2, 10)
    n = count_parameters(model)
    print(f"PARAMS {name} {n}")
    assert n == EXPECTED_PARAMETERS[name]


def test_regnetx_is_the_cifar_variant():
    net = regnetx_200mf()
    stem_conv = net.stem[0]
    assert stem_conv.kernel_size == (3, 3) and stem_conv.stride == (1, 1)
    depths = [len(stage) for stage in net.trunk_output]
    assert depths == [1, 1, 4, 7]
    widths = [stage[-1].f.c[0].out_channels for stage in net.trunk_output]
    groups = {block.f.b[0].groups * 8 == block.f.b[0].in_channels for stage in net.trunk_output for block in stage}
    assert groups == {True}  # group width 8
    assert widths == [24, 56, 152, 368]
    assert abs(count_parameters(net) - 2.32e6) < 0.01e6  # the reference CIFAR count, about 2.32M


def test_num_classes_and_bad_name():
    assert vision_model("resnet18", num_classes=100)(torch.randn(1, 3, 32, 32)).shape == (1, 100)
    assert mnist_cnn(num_classes=3)(torch.randn(1, 1, 28, 28)).shape == (1, 3)
    with pytest.raises(ValueError, match="unknown model"):
        vision_model("alexnet")


def _reference_regnetx_200mf_count(num_classes=10):
    """Parameter count of kuangliu/pytorch-cifar's RegNetX_200MF, from its layer shapes.

    Stem: 3x3 conv 3->64 + BN. Block(w_in, w_out, stride): 1x1 conv w_in->w, BN, grouped 3x3 conv
    (group width 8), BN, 1x1 conv w->w_out, BN, and a 1x1 conv + BN shortcut when the shape changes.
    """
    total = 3 * 64 * 9 + 2 * 64
    w_in = 64
    for depth, w, stride in zip([1, 1, 4, 7], [24, 56, 152, 368], [1, 1, 2, 2]):
        for i in range(depth):
            s = stride if i == 0 else 1
            total += w_in * w + 2 * w + w * 8 * 9 + 2 * w + w * w + 2 * w
            if s != 1 or w_in != w:
                total += w_in * w + 2 * w
            w_in = w
    return total + 368 * num_classes + num_classes


def test_regnetx_matches_the_reference_cifar_count():
    assert _reference_regnetx_200mf_count() == 2_321_946
    assert count_parameters(regnetx_200mf()) == _reference_regnetx_200mf_count()
