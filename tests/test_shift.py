"""The shift operator: semantics on hand-made tensors, in-place == naive, gradients, errors."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from temporalshift import TemporalShift, temporal_shift
from temporalshift.ops.shift import consumable_inputs


def _clip(n=1, t=4, c=8, hw=1, dtype=torch.float64):
    """Value = 100*frame + channel (+1000*clip), so every entry names where it came from."""
    x = torch.zeros(n, t, c, hw, hw, dtype=dtype)
    for i in range(n):
        for f in range(t):
            for ch in range(c):
                x[i, f, ch] = 1000 * i + 100 * f + ch
    return x.view(n * t, c, hw, hw)


def _frame_values(y, n, t):
    return y.view(n, t, y.shape[1], -1)[..., 0]


def test_bidirectional_zero_moves_first_fold_from_next_and_second_from_previous():
    x = _clip(t=4, c=8)  # shift_div=4 -> fold=2
    y = _frame_values(temporal_shift(x, num_segments=4, shift_div=4), 1, 4)[0]
    for f in range(4):
        nxt = [100 * (f + 1) + ch if f < 3 else 0 for ch in (0, 1)]
        prv = [100 * (f - 1) + ch if f > 0 else 0 for ch in (2, 3)]
        stay = [100 * f + ch for ch in range(4, 8)]
        assert y[f].tolist() == nxt + prv + stay


def test_circulant_wraps_around():
    x = _clip(t=3, c=8)
    y = _frame_values(temporal_shift(x, 3, shift_div=4, padding="circulant"), 1, 3)[0]
    assert y[2, :2].tolist() == [0, 1]  # last frame takes the first frame's first fold
    assert y[0, 2:4].tolist() == [202, 203]  # first frame takes the last frame's second fold


@pytest.mark.parametrize(
    "direction, expected_frame1",
    [("left", [200, 201, 102, 103]), ("right", [0, 1, 102, 103])],
)
def test_unidirectional_shifts_only_the_first_fold(direction, expected_frame1):
    x = _clip(t=3, c=8)
    y = _frame_values(temporal_shift(x, 3, shift_div=4, direction=direction), 1, 3)[0]
    assert y[1, :4].tolist() == expected_frame1
    assert y[:, 4:].tolist() == [[100 * f + ch for ch in range(4, 8)] for f in range(3)]


def test_clips_do_not_leak_into_each_other():
    x = _clip(n=2, t=2, c=8)
    y = _frame_values(temporal_shift(x, 2, shift_div=8), 2, 2)
    assert y[1, 0, 0].item() == 1100  # clip 1 frame 0 takes clip 1 frame 1
    assert y[0, 1, 0].item() == 0  # clip 0's last frame gets zeros, not clip 1's first frame
    assert y[1, 0, 1].item() == 0


def test_backward_is_the_reverse_shift():
    x = _clip(t=4, c=8).requires_grad_(True)
    g = _clip(t=4, c=8) + 0.5
    (grad,) = torch.autograd.grad(temporal_shift(x, 4, 4), x, g)
    gv = _frame_values(grad, 1, 4)[0]
    gg = _frame_values(g, 1, 4)[0]
    # channel 0 of frame f fed output frame f-1, channel 2 of frame f fed output frame f+1
    assert gv[1, 0] == gg[0, 0] and gv[0, 0] == 0
    assert gv[2, 2] == gg[3, 2] and gv[3, 2] == 0
    assert torch.equal(gv[:, 4:], gg[:, 4:])


@pytest.mark.parametrize("direction", ["bidirectional", "left", "right"])
@pytest.mark.parametrize("padding", ["zero", "circulant"])
@pytest.mark.parametrize("frame_by_frame", [False, True])
def test_inplace_equals_naive_forward_and_backward(direction, padding, frame_by_frame, monkeypatch):
    import temporalshift.ops.shift as shift_ops

    # both ways of moving the frames: through one temporary, and frame by frame with none
    monkeypatch.setattr(shift_ops, "_FRAME_BY_FRAME_MIN", 0 if frame_by_frame else 10**9)
    torch.manual_seed(0)
    x = torch.randn(2 * 5, 16, 3, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2 * 5, 16, 3, 3, dtype=torch.float64)
    naive = temporal_shift(x, 5, 4, direction, padding)
    inplace = temporal_shift(x.clone(), 5, 4, direction, padding, inplace=True)
    assert torch.equal(naive, inplace)
    (g_naive,) = torch.autograd.grad(naive, x, g)
    (g_inplace,) = torch.autograd.grad(inplace, x, g)
    assert torch.equal(g_naive, g_inplace)
    assert torch.autograd.gradcheck(lambda t: temporal_shift(t.clone(), 5, 4, direction, padding, inplace=True), (x,))
    assert torch.autograd.gradcheck(lambda t: temporal_shift(t, 5, 4, direction, padding), (x,))


class _AllocationWatcher(TorchDispatchMode):
    """Records the size of every tensor an op creates (outputs that are not views of inputs)."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in args if isinstance(a, torch.Tensor) and a.layout == torch.strided]  # not oneDNN's
        bases = {a.untyped_storage().data_ptr() for a in inputs}
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if not isinstance(o, torch.Tensor) or o.layout != torch.strided:
                continue
            if o.untyped_storage().data_ptr() not in bases:
                self.sizes.append(o.numel())
        return out


def test_inplace_writes_into_its_input_and_allocates_no_full_size_copy():
    x = torch.randn(4 * 8, 64, 7, 7)
    expected = temporal_shift(x, 8)
    with _AllocationWatcher() as watcher:
        y = temporal_shift(x, 8, inplace=True)
    assert y.data_ptr() == x.data_ptr()
    assert torch.equal(y, expected)
    assert watcher.sizes, "the watcher saw no temporaries at all"
    assert max(watcher.sizes) <= x.numel() // 8  # at most one fold of channels
    with _AllocationWatcher() as watcher:
        temporal_shift(torch.randn_like(x), 8)
    assert max(watcher.sizes) == x.numel()  # the naive version does copy


def test_bad_settings_are_refused_when_the_module_is_built():
    with pytest.raises(ValueError, match="num_segments must be >= 1, got 0"):
        TemporalShift(0)
    with pytest.raises(ValueError, match="shift_div must be >= 2"):
        TemporalShift(4, shift_div=0)
    with pytest.raises(TypeError, match="num_segments must be an integer, got 4.0"):
        temporal_shift(torch.zeros(8, 8), 4.0)


def test_inplace_refuses_to_corrupt_a_tensor_autograd_still_needs():
    x = torch.randn(8, 16, 2, 2, requires_grad=True)
    y = torch.sigmoid(x)  # sigmoid saves its output for backward
    z = temporal_shift(y, 4, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_errors_are_clear():
    with pytest.raises(ValueError, match="not a multiple of num_segments=4"):
        temporal_shift(torch.zeros(6, 16, 2, 2), 4)
    with pytest.raises(ValueError, match="cannot be shifted with shift_div=8"):
        temporal_shift(torch.zeros(8, 4, 2, 2), 8)
    with pytest.raises(ValueError, match="direction"):
        temporal_shift(torch.zeros(8, 16), 8, direction="up")
    with pytest.raises(ValueError, match="padding"):
        TemporalShift(8, padding="reflect")


def test_module_adds_no_state_and_matches_functional():
    m = TemporalShift(4, shift_div=8, padding="circulant")
    assert list(m.state_dict()) == [] and list(m.parameters()) == []
    x = torch.randn(8, 16, 3, 3)
    assert torch.equal(m(x), temporal_shift(x, 4, 8, padding="circulant"))
    assert "num_segments=4" in repr(m)


def test_single_frame_clip_zero_padding_clears_shifted_channels():
    x = torch.ones(2, 8, 1, 1)
    y = temporal_shift(x, 1, shift_div=4)
    assert y[:, :4].abs().sum() == 0 and torch.equal(y[:, 4:], x[:, 4:])
    assert torch.equal(temporal_shift(x.clone(), 1, 4, inplace=True), y)


def test_paddlevideo_order_takes_the_past_first():
    x = _clip(t=3, c=8)
    y = _frame_values(temporal_shift(x, 3, shift_div=4, direction="bidirectional_reversed"), 1, 3)[0]
    assert y[1, :4].tolist() == [0, 1, 202, 203]  # [0, fold) from t-1, [fold, 2 fold) from t+1
    inplace = temporal_shift(x.clone(), 3, 4, direction="bidirectional_reversed", inplace=True)
    assert torch.equal(inplace, temporal_shift(x, 3, 4, direction="bidirectional_reversed"))


@pytest.mark.parametrize("direction", ["bidirectional", "left", "right", "bidirectional_reversed"])
@pytest.mark.parametrize("padding", ["zero", "circulant"])
def test_inference_fast_path_shifts_in_place_and_restores_the_input(direction, padding):
    torch.manual_seed(0)
    x = torch.randn(3 * 4, 16, 5, 5)
    before = x.clone()
    shift = TemporalShift(4, 4, direction, padding)
    seen = {}

    def fn(y):
        seen["ptr"] = y.data_ptr()
        return y * 2

    with torch.inference_mode():
        out = shift.call_shifted(x, fn)
    assert seen["ptr"] == x.data_ptr()  # no copy: fn saw x itself, shifted
    assert torch.equal(out, temporal_shift(before, 4, 4, direction, padding) * 2)
    assert torch.equal(x, before)  # and x is back as it was
    with torch.inference_mode(), consumable_inputs():
        owned = shift.shift_owned(x.clone())
    assert torch.equal(owned, temporal_shift(before, 4, 4, direction, padding))
    with torch.inference_mode():  # outside consumable_inputs: a shifted copy, x left alone
        assert torch.equal(shift.shift_owned(x), owned) and torch.equal(x, before)
    y = shift.call_shifted(x, fn)  # with autograd on: the ordinary out-of-place path
    assert seen["ptr"] != x.data_ptr() and torch.equal(y, out)


@pytest.mark.parametrize("direction", ["bidirectional", "left", "right", "bidirectional_reversed"])
@pytest.mark.parametrize("padding", ["zero", "circulant"])
@pytest.mark.parametrize("with_identity", [False, True])
@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("frames", [1, 4])
def test_shifted_residual_matches_the_plain_block_in_place_or_through_a_copy(
    direction, padding, with_identity, small, frames, monkeypatch
):
    import temporalshift.ops.shift as shift_ops
    from temporalshift.ops.shift import shifted_residual

    # a large input is consumed (shifted in place), a small one is copied with its groups shifted
    monkeypatch.setattr(shift_ops, "_COPY_MAX_NUMEL", 10**9 * small)
    torch.manual_seed(0)
    shift = TemporalShift(frames, 4, direction, padding)
    conv = torch.nn.Conv2d(16, 8, 1, bias=False)
    rest = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, padding=1))
    x = torch.randn(3 * frames, 16, 5, 5)
    identity = torch.randn_like(x) if with_identity else None
    expected = rest(conv(temporal_shift(x, frames, 4, direction, padding))) + (x if identity is None else identity)
    kept = x.clone()
    trained = shifted_residual(kept, shift, conv, rest, identity)  # autograd on: x is kept
    assert torch.allclose(trained, expected, atol=1e-6) and torch.equal(kept, x)
    owned = x.clone()
    with torch.inference_mode(), consumable_inputs():
        fast = shifted_residual(owned, shift, conv, rest, identity)
    assert torch.allclose(fast, expected, atol=1e-6)
    assert torch.equal(
        owned, x if small else temporal_shift(x, frames, 4, direction, padding)
    )  # consumed: left shifted
    with torch.inference_mode():  # outside consumable_inputs (a block called on its own): x kept
        assert torch.allclose(shifted_residual(kept, shift, conv, rest, identity), expected, atol=1e-6)
    assert torch.equal(kept, x)


@pytest.mark.parametrize("direction", ["bidirectional", "left", "right", "bidirectional_reversed"])
@pytest.mark.parametrize("padding", ["zero", "circulant"])
@pytest.mark.parametrize("frames", [1, 4])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "3d"])
def test_shifted_copy_is_the_shift_in_every_layout(direction, padding, frames, layout):
    from temporalshift.ops.shift import _shifted_copy

    torch.manual_seed(0)
    shift = TemporalShift(frames, 4, direction, padding)
    x = torch.randn(3 * frames, 16, 5, 5) if layout != "3d" else torch.randn(3 * frames, 16, 7)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    before = x.clone()
    with torch.inference_mode():  # its row indices are cached here, then reused outside
        fast = _shifted_copy(x, shift)
    assert torch.equal(fast, temporal_shift(before, frames, 4, direction, padding))
    assert fast.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert torch.equal(_shifted_copy(x, shift), fast) and torch.equal(x, before)


def test_models_give_the_same_outputs_with_and_without_the_fast_path():
    from temporalshift import create_model

    cases = [
        ("tsm_r50_1x1x8_k400", {"backbone": "resnet18", "width": 16}),
        ("tsm_r50_1x1x8_k400", {"backbone": "resnet18", "width": 16, "shift_place": "block"}),
        ("tsm_mobilenetv2_1x1x8_k400", {}),
        ("tsm_mobileones4_1x1x16_k400", {"backbone": "mobileone_s0"}),
    ]
    for name, kw in cases:
        model = create_model(name, **kw).eval()
        clip = torch.randn(2, model.num_segments, 3, 48, 48)
        slow = model(clip)  # autograd on: out-of-place shifts
        with torch.inference_mode():
            fast = model(clip)
        torch.testing.assert_close(fast, slow.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize(
    "name, kw",
    [
        ("tsm_r50_1x1x8_k400", {"backbone": "resnet18", "width": 16}),
        ("tsm_r50_1x1x8_k400", {"width": 16, "shift_place": "block"}),
        ("tsm_mobilenetv2_1x1x8_k400", {}),
        ("tsm_mobileones4_1x1x16_k400", {"backbone": "mobileone_s0"}),
    ],
)
def test_inference_keeps_what_hooks_hold_and_blocks_called_alone_keep_their_input(name, kw, fast, monkeypatch):
    """Blocks overwrite their inputs in inference only inside the model's own forward and only while
    no hook can hold an activation (feature extraction with forward hooks under no_grad)."""
    import temporalshift as ts
    import temporalshift.ops.shift as shift_ops

    monkeypatch.setattr(shift_ops, "_COPY_MAX_NUMEL", 0)  # every input large enough to be consumed
    torch.manual_seed(0)
    model = ts.create_model(name, **kw).eval()
    if fast:
        model = ts.optimize_for_inference(model)
    clip = torch.randn(1, model.num_segments, 3, 64, 64)
    with torch.no_grad():
        expected = model(clip)
    held, inputs = [], {}
    blocks = [m for m in model.backbone.modules() if getattr(m, "shift", None) is not None]
    watched = blocks + [m for b in blocks for m in (getattr(b, "downsample", None), b.shift) if m is not None]
    hooks = [m.register_forward_hook(lambda m, i, o: held.append((o, o.clone()))) for m in watched]
    hooks += [b.register_forward_pre_hook(lambda m, i: inputs.__setitem__(m, i[0].clone())) for b in blocks]
    with torch.no_grad():
        torch.testing.assert_close(model(clip), expected, rtol=1e-5, atol=1e-6)
    assert held and all(torch.equal(o, copy) for o, copy in held)  # no later block wrote over them
    for hook in hooks:
        hook.remove()
    for block in blocks:  # each called on its own, on the input it had in the model
        x = inputs[block].clone()
        with torch.no_grad():
            block(x)
        assert torch.equal(x, inputs[block])


@pytest.mark.parametrize("fast", [False, True])
def test_an_unwatched_model_still_consumes_its_activations(fast):
    """The guard above costs nothing without hooks: less memory allocated than with a (no-op) hook."""
    import temporalshift as ts

    model = ts.create_model("tsm_r50_1x1x8_k400", width=16).eval()
    model = ts.optimize_for_inference(model) if fast else model
    clip = torch.randn(1, 8, 3, 96, 96)
    with torch.no_grad():
        model(clip)  # the fast form packs its weights on the first call
    allocated = []
    for hooked in (False, True):
        hook = model.backbone.layer1.register_forward_hook(lambda m, i, o: None) if hooked else None
        with torch.no_grad(), _AllocationWatcher() as watcher:
            model(clip)
        allocated.append(sum(watcher.sizes))
        if hook is not None:
            hook.remove()
    assert allocated[0] < allocated[1], allocated


@pytest.mark.parametrize("direction", ["bidirectional", "right", "bidirectional_reversed"])
@pytest.mark.parametrize("padding", ["zero", "circulant"])
def test_memory_saving_shifted_conv_has_the_naive_gradients(direction, padding):
    from temporalshift.ops.shift import _ShiftedConv

    torch.manual_seed(0)
    x = torch.randn(2 * 4, 16, 5, 5, dtype=torch.float64, requires_grad=True)
    conv = torch.nn.Conv2d(16, 8, 3, padding=1, bias=False).double()
    shift = TemporalShift(4, 4, direction, padding)
    before = x.detach().clone()
    assert torch.autograd.gradcheck(lambda a, w: _ShiftedConv.apply(a, w, shift, conv), (x, conv.weight))
    torch.testing.assert_close(
        _ShiftedConv.apply(x, conv.weight, shift, conv), conv(temporal_shift(x, 4, 4, direction, padding))
    )
    assert torch.equal(x.detach(), before)


def test_training_step_gradients_match_the_naive_shift(monkeypatch):
    import temporalshift.ops.shift as shift_ops
    from temporalshift import create_model

    def grads(save_memory):
        monkeypatch.setattr(shift_ops, "SAVE_SHIFT_MEMORY", save_memory)
        torch.manual_seed(0)
        out = {}
        for name, kw in (
            ("tsm_r50_1x1x8_k400", {"backbone": "resnet18", "width": 16}),
            ("tsm_mobilenetv2_1x1x8_k400", {}),
        ):
            model = create_model(name, dropout=0.0, **kw).train()
            clip = torch.randn(2, 8, 3, 48, 48)
            torch.nn.functional.cross_entropy(model(clip), torch.tensor([1, 2])).backward()
            out[name] = {k: p.grad.clone() for k, p in model.named_parameters()}
        return out

    fast, naive = grads(True), grads(False)
    for name in fast:
        for k in fast[name]:
            torch.testing.assert_close(fast[name][k], naive[name][k], rtol=1e-4, atol=1e-6)
