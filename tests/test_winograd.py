"""Winograd F(4x4, 3x3) convolutions of the fast form (ops/winograd.py): the direct conv's outputs."""

import copy

import pytest
import torch
import torch.nn.functional as F

import temporalshift as ts
import temporalshift.ops.winograd as wg
from temporalshift.ops.fused import _HAVE_ONEDNN, FusedConv2d
from temporalshift.ops.winograd import WinogradConv2d, winograd_weight

pytestmark = pytest.mark.skipif(not _HAVE_ONEDNN, reason="PyTorch built without oneDNN")


def _conv(cin: int, cout: int, bias: bool = True) -> torch.nn.Conv2d:
    torch.manual_seed(0)
    return torch.nn.Conv2d(cin, cout, 3, padding=1, bias=bias).eval().requires_grad_(False)


def _nhwc(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).contiguous(memory_format=torch.channels_last)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=2e-5 * float(expected.abs().max()))


@pytest.fixture
def counted(monkeypatch):
    """How many times the Winograd path ran (and a clean failure flag for this test)."""
    monkeypatch.setattr(wg, "_WORKS", True)
    calls = []
    tiles = WinogradConv2d._tiles

    def spy(self, x):
        calls.append(tuple(x.shape))
        return tiles(self, x)

    monkeypatch.setattr(WinogradConv2d, "_tiles", spy)
    return calls


@pytest.mark.parametrize("size", [(8, 8), (5, 7), (9, 13), (1, 1), (14, 14)])
@pytest.mark.parametrize(("activation", "fn"), [("none", lambda y: y), ("relu", F.relu), ("relu6", F.relu6)])
def test_winograd_conv_gives_the_direct_convs_output(size, activation, fn, counted):
    conv = _conv(16, 24)
    fast = WinogradConv2d(conv, activation).to(memory_format=torch.channels_last)
    x = _nhwc(3, 16, *size) * 3
    with torch.inference_mode():
        y = fast(x)
    _close(y, fn(F.conv2d(x, conv.weight, conv.bias, padding=1)))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert counted == [tuple(x.shape)]


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_residual_tail_adds_into_the_identity(relu, bias, counted):
    conv = _conv(16, 16, bias)
    fast = WinogradConv2d(conv).to(memory_format=torch.channels_last)
    x, identity = _nhwc(2, 16, 7, 10), _nhwc(2, 16, 7, 10)
    expected = identity + F.conv2d(x, conv.weight, conv.bias, padding=1)
    expected = F.relu(expected) if relu else expected
    other = identity.clone()
    with torch.inference_mode():
        out = fast.add_into_(other, x, relu=relu)
    assert out is other  # written into the identity, as the fast form's blocks expect
    _close(out, expected)
    assert counted


def test_winograd_runs_only_in_the_cpu_fp32_inference_fast_path(counted):
    conv = _conv(8, 8)
    fast = WinogradConv2d(conv, "relu").to(memory_format=torch.channels_last)
    direct = FusedConv2d(conv, "relu").to(memory_format=torch.channels_last)
    x = _nhwc(2, 8, 6, 6)
    with torch.no_grad():  # no inference mode: still the fast path (nothing records)
        _close(fast(x), direct(x))
    assert len(counted) == 1
    expected = F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))
    _close(fast(x), expected)  # autograd on (the module's weights are frozen, the path is not)
    with torch.inference_mode():
        _close(fast(x.contiguous()), expected)  # NCHW input: oneDNN's fused conv path
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast(x)  # bf16: oneDNN's direct conv (Winograd loses too much precision there)
    assert len(counted) == 1


def test_winograd_falls_back_for_good_with_a_warning_when_onednn_refuses(monkeypatch):
    monkeypatch.setattr(wg, "_WORKS", True)
    monkeypatch.setattr(WinogradConv2d, "_tiles", lambda self, x: (_ for _ in ()).throw(RuntimeError("no")))
    conv = _conv(8, 8)
    fast = WinogradConv2d(conv).to(memory_format=torch.channels_last)
    x = _nhwc(1, 8, 5, 5)
    with torch.inference_mode(), pytest.warns(UserWarning, match="Winograd"):
        y = fast(x)
    _close(y, F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert not wg._WORKS


def test_winograd_weight_and_what_it_accepts():
    assert winograd_weight(torch.randn(24, 16, 3, 3)).shape == (36 * 24, 16, 1, 1)
    for bad in (
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
        torch.nn.Conv2d(8, 8, 1),
        torch.nn.Conv2d(8, 8, 3, padding=0),
    ):
        assert not WinogradConv2d.suits(bad, min_channels=1)
        with pytest.raises(ValueError, match="3x3 conv with stride 1"):
            WinogradConv2d(bad)
    assert WinogradConv2d.suits(torch.nn.Conv2d(128, 256, 3, padding=1))
    assert not WinogradConv2d.suits(torch.nn.Conv2d(64, 64, 3, padding=1))  # the transforms cost more


def test_fast_form_runs_resnet50s_wide_3x3_convs_by_winograd():
    fast = ts.optimize_for_inference(ts.create_model("tsm_r50_1x1x8_k400").eval())
    wide = [m for m in fast.modules() if isinstance(m, WinogradConv2d)]
    assert len(wide) == 10  # layer2: 3, layer3: 5, layer4: 2 (each stage's first 3x3 has stride 2)
    assert {m.in_channels for m in wide} == {128, 256, 512}
    mobilenet = ts.optimize_for_inference(ts.create_model("tsm_mobilenetv2_1x1x8_k400").eval())
    assert not any(isinstance(m, WinogradConv2d) for m in mobilenet.modules())  # depthwise 3x3s


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_fast_form_with_winograd_everywhere_gives_the_plain_models_outputs(backbone, monkeypatch, counted):
    monkeypatch.setattr(wg, "MIN_CHANNELS", 1)
    torch.manual_seed(0)
    model = ts.create_model("tsm_r50_1x1x8_k400", backbone=backbone, width=16).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 0.05)
    fast = ts.optimize_for_inference(model)
    assert sum(isinstance(m, WinogradConv2d) for m in fast.modules()) >= 4
    clip = torch.randn(2, 8, 3, 48, 40)
    with torch.inference_mode():
        expected = model(clip)
        tol = dict(rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
        torch.testing.assert_close(fast(clip.clone()), expected, **tol)
        torch.testing.assert_close(copy.deepcopy(fast)(clip.clone()), expected, **tol)  # repacked weights
    assert counted
