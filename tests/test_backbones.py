"""Backbones: torchvision layouts, shift placement, temporal dependence, non-local, MobileOne."""

import pytest
import torch
import torchvision

from temporalshift.models.backbones import MobileNetV2, MobileOne, NonLocalBlock, ResNet
from temporalshift.models.backbones.resnet import Bottleneck
from temporalshift.ops.shift import TemporalShift


def _without(prefix, state):
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_torchvision_resnet_weights_load_strictly_and_give_the_same_features(depth):
    tv = getattr(torchvision.models, f"resnet{depth}")().eval()
    ours = ResNet(depth, num_segments=2, shift_div=0).eval()
    ours.load_state_dict(_without("fc.", tv.state_dict()), strict=True)
    if depth in (18, 50):  # same weights and no shift: identical to torchvision's features
        x = torch.randn(2, 3, 64, 64)
        trunk = torch.nn.Sequential(*list(tv.children())[:-2])
        torch.testing.assert_close(ours(x), trunk(x))


def test_torchvision_mobilenetv2_weights_load_strictly_and_give_the_same_features():
    tv = torchvision.models.mobilenet_v2().eval()
    ours = MobileNetV2(num_segments=2, shift_div=0).eval()
    ours.load_state_dict(_without("classifier.", tv.state_dict()), strict=True)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), tv.features(x))


def _shifted(blocks):
    return [i for i, b in enumerate(blocks) if getattr(b, "shift", None) is not None]


def test_resnet_shift_placement():
    r50 = ResNet(50)
    assert all(_shifted(layer) == list(range(len(layer))) for layer in (r50.layer1, r50.layer3))
    r101 = ResNet(101)  # every other block, as the authors and mmaction2 do for 23+ blocks
    assert _shifted(r101.layer3) == list(range(0, 23, 2))
    assert _shifted(r101.layer1) == [0, 2]
    assert r50.layer1[0].shift_place == "blockres"
    assert ResNet(18, shift_place="block").layer2[1].shift_place == "block"
    assert not any(isinstance(m, TemporalShift) for m in ResNet(18, shift_div=0).modules())


def test_mobilenetv2_shifts_exactly_the_residual_blocks():
    net = MobileNetV2()
    assert _shifted(net.features) == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]


def _frames_changed(net, t, perturbed, **kw):
    # float64: a frame that the perturbation cannot reach gives bit-identical outputs.
    net = net.double()
    torch.manual_seed(0)
    x = torch.randn(t, kw.get("c", 3), kw.get("hw", 32), kw.get("hw", 32), dtype=torch.float64)
    x2 = x.clone()
    x2[perturbed] += 1.0
    with torch.no_grad():
        diff = (net(x) - net(x2)).flatten(1).abs().amax(1)
    return [f for f in range(t) if diff[f] > 0]


def test_one_shifted_block_mixes_exactly_the_neighbouring_frames():
    block = Bottleneck(64, 16).eval()
    block.shift = TemporalShift(8, 8)
    assert _frames_changed(block, 8, 3, c=64, hw=8) == [2, 3, 4]
    block.shift = None  # TSN: frames are independent
    assert _frames_changed(block, 8, 3, c=64, hw=8) == [3]


@pytest.mark.parametrize(
    "make",
    [
        lambda s: ResNet(18, num_segments=8, shift_div=s),
        lambda s: ResNet(18, num_segments=8, shift_div=s, shift_place="block"),
        lambda s: MobileNetV2(num_segments=8, shift_div=s),
    ],
    ids=["resnet18-blockres", "resnet18-block", "mobilenetv2"],
)
def test_shifts_make_frames_depend_on_their_neighbours_and_tsn_does_not(make):
    tsm, tsn = make(8).eval(), make(0).eval()
    changed = _frames_changed(tsm, 8, 3)
    assert {2, 3, 4} <= set(changed)
    assert _frames_changed(tsn, 8, 3) == [3]


def test_mobileone_block_shifts_reach_only_frames_at_even_distance():
    # mmaction2's MobileOneTSM shifts the input of every depth-wise *and* point-wise block. A
    # depth-wise block keeps channel groups apart, so each (dw, pw) pair moves a channel group by
    # -2, 0 or +2 frames: information only ever travels an even number of frames.
    tsm = MobileOne("s0", num_segments=8).eval()
    assert _frames_changed(tsm, 8, 3) == [1, 3, 5, 7]
    assert _frames_changed(MobileOne("s0", num_segments=8, shift_div=0).eval(), 8, 3) == [3]


def test_temporal_pool_halves_time_and_shifts_see_half_the_segments():
    net = ResNet(18, num_segments=8, temporal_pool=True).eval()
    assert net(torch.randn(16, 3, 32, 32)).shape[0] == 8
    assert net.layer1[0].shift.num_segments == 8 and net.layer2[0].shift.num_segments == 4


@pytest.mark.parametrize("mode", ["dot_product", "gaussian", "embedded_gaussian"])
def test_non_local_block_starts_as_identity_then_mixes_all_frames(mode):
    nl = NonLocalBlock(16, num_segments=4, mode=mode).eval()
    x = torch.randn(8, 16, 6, 6)
    torch.testing.assert_close(nl(x), x)  # zero-initialised output BN
    torch.nn.init.ones_(nl.bn.weight)
    x2 = x.clone()
    x2[0] += 1.0  # clip 0, frame 0
    diff = (nl(x) - nl(x2)).flatten(1).abs().amax(1)
    assert (diff[:4] > 0).all() and (diff[4:] == 0).all()  # whole clip 0, nothing of clip 1
    assert ("theta.weight" in nl.state_dict()) == (mode != "gaussian")


def test_resnet_non_local_placement_follows_mmaction2():
    pattern = ((0, 0, 0), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 0, 0))
    net = ResNet(50, non_local=pattern, non_local_mode="dot_product")
    where = [n for n, m in net.named_modules() if isinstance(m, NonLocalBlock)]
    assert where == [f"layer2.{i}.non_local" for i in (0, 2)] + [f"layer3.{i}.non_local" for i in (0, 2, 4)]
    assert net(torch.randn(8, 3, 64, 64)).shape == (8, 2048, 2, 2)
    with pytest.raises(ValueError, match="one flag per block"):
        ResNet(50, non_local=((1,), (1,), (1,), (1,)))


def _randomise_bn(net):
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.1)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("arch", ["s0", "s4"])
def test_mobileone_reparameterize_keeps_outputs(arch):
    net = MobileOne(arch, num_segments=4).eval()
    _randomise_bn(net)
    x = torch.randn(8, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        net.reparameterize()
        after = net(x)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    keys = list(net.state_dict())
    assert any("branch_reparam" in k for k in keys)
    assert not any("branch_conv_list" in k or "branch_scale" in k for k in keys)
    assert net.stage0.shift is None and net.stage1[0].shift is not None  # 3 channels: no shift
