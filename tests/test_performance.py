"""optimize_for_inference's fused form (ops/fused.py): same outputs as the plain model everywhere."""

import copy
import io

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import temporalshift as ts
from temporalshift.ops.fused import _HAVE_ONEDNN, FusedConv2d
from temporalshift.ops.shift import TemporalShift, temporal_shift

CASES = [
    ("tsm_r50_1x1x8_k400", {"backbone": "resnet18", "width": 16}),
    ("tsm_r50_1x1x8_k400", {"width": 16}),
    ("tsm_r50_1x1x8_k400", {"width": 16, "shift_place": "block"}),
    ("tsm_r50_1x1x8_k400", {"width": 16, "shift_padding": "circulant", "shift_direction": "right"}),
    ("tsm_r50_1x1x8_k400", {"width": 16, "temporal_pool": True}),
    ("tsn_r50_1x1x8_k400", {"width": 16}),
    ("tsm_r50_nl_dot_1x1x8_k400", {"width": 16}),
    ("tsm_mobilenetv2_1x1x8_k400", {}),
    ("tsm_mobileones4_1x1x16_k400", {"backbone": "mobileone_s0"}),
]


def _model(name: str, kw: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ts.create_model(name, **kw).eval()
    with torch.no_grad():  # non-trivial BN statistics and a classifier that is not ~0
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
        model.head.fc.weight.normal_(0, 0.05)
    return model


class _OpNames(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("name", "kw"), CASES)
def test_fused_form_gives_the_plain_models_outputs(name, kw):
    model = _model(name, kw)
    clip = torch.randn(2, model.num_segments, 3, 64, 64)
    with torch.inference_mode():
        expected = model(clip)
    tol = dict(rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    for channels_last in (True, False):
        fast = ts.optimize_for_inference(model, channels_last=channels_last)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
        assert sum(isinstance(m, FusedConv2d) for m in fast.modules()) > 0
        with torch.inference_mode():
            torch.testing.assert_close(fast(clip.clone()), expected, **tol)
            torch.testing.assert_close(fast(clip.clone()), expected, **tol)  # packed weights reused
        with torch.no_grad():
            torch.testing.assert_close(fast(clip.clone()), expected, **tol)
        torch.testing.assert_close(fast(clip.clone()).detach(), expected, **tol)  # autograd on: unfused path
    assert torch.equal(clip, clip.clone())  # the caller's clip is never consumed


@pytest.mark.skipif(not _HAVE_ONEDNN, reason="PyTorch built without oneDNN")
def test_fused_form_runs_oneDNNs_fused_convolutions_and_no_separate_activation_or_add():
    fast = ts.optimize_for_inference(_model("tsm_r50_1x1x8_k400", {"width": 16}))
    clip = torch.randn(1, 8, 3, 64, 64)
    with torch.inference_mode(), _OpNames() as seen:
        fast(clip)
    names = set(seen.names)
    assert {"mkldnn._convolution_pointwise", "mkldnn._convolution_pointwise_"} <= names
    unfused = {"aten.conv2d", "aten.convolution", "aten.relu_", "aten.relu", "aten.clamp_min_", "aten.add_", "aten.add"}
    assert not names & unfused
    blocks = [m for m in fast.modules() if hasattr(m, "fused")]
    assert blocks and all(m.fused for m in blocks)


def test_fused_model_copies_pickles_and_follows_weight_changes():
    model = _model("tsm_mobilenetv2_1x1x8_k400", {})
    fast = ts.optimize_for_inference(model)
    clip = torch.randn(1, 8, 3, 64, 64)
    with torch.inference_mode():
        before = fast(clip.clone())
    twin = copy.deepcopy(fast)  # packed oneDNN weights have no storage: dropped, rebuilt on use
    buffer = io.BytesIO()
    torch.save(fast.state_dict(), buffer)
    with torch.inference_mode():
        torch.testing.assert_close(twin(clip.clone()), before)
    with torch.no_grad():  # in-place weight change: the packed copy must not be used any more
        for m in fast.modules():
            if isinstance(m, FusedConv2d):
                m.weight.mul_(0.5)
    with torch.inference_mode():
        changed = fast(clip.clone())
    reference = copy.deepcopy(fast)  # fresh packs of the changed weights
    with torch.inference_mode():
        torch.testing.assert_close(changed, reference(clip.clone()))
    assert not torch.allclose(changed, before)
    for m in fast.modules():
        if isinstance(m, FusedConv2d):
            for size in range(1, 8):  # many input shapes: the cache stays bounded
                with torch.inference_mode():
                    m(torch.randn(1, m.in_channels, 8 + size, 8 + size).contiguous(memory_format=torch.channels_last))
            assert len(m._packed) <= 4
            break


def test_fused_conv_rejects_what_it_cannot_fuse():
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    with pytest.raises(ValueError, match="activation"):
        FusedConv2d(conv, "gelu")
    with pytest.raises(ValueError, match="residual tail"):
        FusedConv2d(conv, "relu").add_into_(torch.zeros(1, 4, 5, 5), torch.zeros(1, 4, 5, 5), relu=True)
    with pytest.raises(ValueError, match="zero padding"):
        FusedConv2d(torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))


@pytest.mark.parametrize("direction", ["bidirectional", "right"])
@pytest.mark.parametrize("padding", ["zero", "circulant"])
@pytest.mark.parametrize(
    "channels, fits_cache, in_place",
    # groups of 2 channels: copied in channels-last; of 32: copied while x fits the cache, else in place
    [(16, False, False), (256, False, True), (256, True, False)],
)
@pytest.mark.parametrize("channels_last", [True, False])
def test_call_shifted_sees_the_shift_and_leaves_its_input_as_it_was(
    direction, padding, channels, fits_cache, in_place, channels_last, monkeypatch
):
    import temporalshift.ops.shift as shift_ops

    monkeypatch.setattr(shift_ops, "_RESTORE_MIN_NUMEL", 10**9 if fits_cache else 0)
    shift = TemporalShift(4, 8, direction, padding)
    x = torch.randn(2 * 4, channels, 3, 3)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = temporal_shift(x, 4, 8, direction, padding)
    kept = x.clone()
    seen = []
    with torch.inference_mode():
        out = shift.call_shifted(kept, lambda s: seen.append((s.clone(), s.data_ptr())) or s.sum())
    assert torch.equal(seen[0][0], expected) and torch.equal(kept, x)
    assert (seen[0][1] == kept.data_ptr()) == (in_place or not channels_last)  # contiguous: always in place
    torch.testing.assert_close(out, expected.sum())


def test_online_fast_form_keeps_its_cache_intact():
    model = _model("tsm_mobilenetv2_online_1x1x8_k400", {})
    frames = torch.randn(6, 3, 64, 64)
    fast, plain = ts.OnlineRecognizer(model, engine="torch"), ts.OnlineRecognizer(model, fast=False, engine="torch")
    for frame in frames:
        torch.testing.assert_close(fast.step(frame), plain.step(frame), rtol=1e-4, atol=1e-5)
    if _HAVE_ONEDNN:  # the frame goes in channels-last, so even the stem conv is a fused one
        with _OpNames() as seen:
            fast.step(frames[0])
        assert "mkldnn._convolution_pointwise" in seen.names
        assert not set(seen.names) & {"aten.conv2d", "aten.convolution", "aten.relu6", "aten.hardtanh"}


@pytest.mark.skipif(not _HAVE_ONEDNN, reason="PyTorch built without oneDNN")
def test_a_pytorch_whose_fused_operators_differ_falls_back_once_with_a_warning(monkeypatch):
    import temporalshift.ops.fused as fused

    model = _model("tsm_r50_1x1x8_k400", {"backbone": "resnet18", "width": 16})
    clip = torch.randn(1, 8, 3, 64, 64)
    with torch.inference_mode():
        expected = model(clip)
    fast = ts.optimize_for_inference(model)

    def differs(*args, **kwargs):
        raise TypeError("_reorder_convolution_weight() got an unexpected argument")

    monkeypatch.setattr(fused, "_HAVE_ONEDNN", True)  # put back after the test, whatever the fallback sets
    monkeypatch.setattr(fused.FusedConv2d, "_onednn_args", differs)
    with pytest.warns(UserWarning, match="unfused ones"), torch.inference_mode():
        out = fast(clip.clone())
    assert fused._HAVE_ONEDNN is False  # fell back for good (until monkeypatch restores it)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_the_fallback_test_left_the_fused_path_on():
    import temporalshift.ops.fused as fused

    assert fused._HAVE_ONEDNN == fused._onednn_ops_exist()


@pytest.mark.parametrize(("name", "kw"), [CASES[1], CASES[5], CASES[6], CASES[7]])
def test_optimizing_twice_changes_nothing_and_flops_count_as_the_plain_model(name, kw):
    model = _model(name, kw)
    clip = torch.randn(1, model.num_segments, 3, 64, 64)
    fast = ts.optimize_for_inference(model)
    again = ts.optimize_for_inference(fast)  # already the fast form: a copy of it
    with torch.inference_mode():
        torch.testing.assert_close(again(clip), fast(clip), rtol=0, atol=0)
    # the fused convolutions hide nothing from the counter: the plain model's FLOPs less its BNs' (2 per value)
    bn_values = []
    hooks = [m.register_forward_hook(lambda m, i, o: bn_values.append(o.numel()))
             for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # fmt: skip
    plain = ts.count_flops(model, clip)
    for hook in hooks:
        hook.remove()
    assert ts.count_flops(fast, clip) == ts.count_flops(again, clip) == plain - 2 * sum(bn_values)
