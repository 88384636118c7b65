"""The model zoo: names, exact parameter counts, FLOPs as published, every model runs."""

import pickle

import pytest
import torch

import temporalshift as ts
from temporalshift.models.zoo import describe, get_spec

EXPECTED_NAMES = {
    "tsm_r50_1x1x8_k400", "tsm_r50_1x1x16_k400", "tsm_r50_dense_1x1x8_k400",
    "tsm_r50_nl_dot_1x1x8_k400", "tsm_r50_nl_gauss_1x1x8_k400", "tsm_r50_nl_embgauss_1x1x8_k400",
    "tsm_mobilenetv2_1x1x8_k400", "tsm_mobileones4_1x1x16_k400", "tsm_r50_1x1x8_sthv2",
    "tsm_r50_1x1x16_sthv2", "tsm_r101_1x1x8_sthv2", "tsm_r50_1x1x8_sthv1",
    "tsn_r50_1x1x8_k400", "tsn_mobilenetv2_1x1x8_k400",
    "tsm_mobilenetv2_online_1x1x8_k400",  # the uni-directional model of the online/deploy issue
}  # fmt: skip

# Exact counts from mmaction2's definitions (shared/TSM-FACTS.md, "How the published figures are counted").
PARAMS = {
    "tsm_r50_1x1x8_k400": 24_327_632, "tsm_r50_1x1x16_k400": 24_327_632,
    "tsm_r50_dense_1x1x8_k400": 24_327_632, "tsn_r50_1x1x8_k400": 24_327_632,
    "tsm_r50_1x1x8_sthv2": 23_864_558, "tsm_r50_1x1x16_sthv2": 23_864_558,
    "tsm_r50_1x1x8_sthv1": 23_864_558, "tsm_r101_1x1x8_sthv2": 42_856_686,
    "tsm_r50_nl_dot_1x1x8_k400": 31_682_000, "tsm_r50_nl_embgauss_1x1x8_k400": 31_682_000,
    "tsm_r50_nl_gauss_1x1x8_k400": 28_007_888, "tsm_mobilenetv2_1x1x8_k400": 2_736_272,
    "tsn_mobilenetv2_1x1x8_k400": 2_736_272, "tsm_mobileones4_1x1x16_k400": 13_721_848,
    "tsm_mobilenetv2_online_1x1x8_k400": 2_736_272,
}  # fmt: skip

# mmaction2 1.x FLOPs (backbone only, fvcore convention) re-derived in TSM-FACTS.md, in GFLOPs.
GFLOPS = {
    "tsm_r50_1x1x8_k400": 32.875, "tsm_r50_1x1x16_k400": 65.750, "tsm_r50_dense_1x1x8_k400": 32.875,
    "tsm_r50_1x1x8_sthv2": 32.875, "tsm_r50_1x1x16_sthv2": 65.750, "tsm_r50_1x1x8_sthv1": 32.875,
    "tsn_r50_1x1x8_k400": 32.875, "tsm_r50_nl_dot_1x1x8_k400": 61.298,
    "tsm_r50_nl_embgauss_1x1x8_k400": 61.298, "tsm_r50_nl_gauss_1x1x8_k400": 59.056,
    "tsm_r101_1x1x8_sthv2": 62.655, "tsm_mobilenetv2_1x1x8_k400": 2.503,
    "tsn_mobilenetv2_1x1x8_k400": 2.503, "tsm_mobileones4_1x1x16_k400": 48.651,
    "tsm_mobilenetv2_online_1x1x8_k400": 2.503,
}  # fmt: skip


def test_zoo_has_exactly_the_published_rows():
    assert set(ts.list_models()) == EXPECTED_NAMES
    assert ts.list_models() == sorted(EXPECTED_NAMES)
    assert ts.list_models("tsm_r50_nl_*") == [
        "tsm_r50_nl_dot_1x1x8_k400",
        "tsm_r50_nl_embgauss_1x1x8_k400",
        "tsm_r50_nl_gauss_1x1x8_k400",
    ]


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_params_equal_mmaction2_and_flops_within_one_percent(name):
    info = describe(name)
    assert info["params"] == PARAMS[name]
    assert info["flops"] == pytest.approx(GFLOPS[name] * 1e9, rel=0.01)
    assert isinstance(info["params"], int) and isinstance(info["flops"], int)


def test_mobileone_reparameterized_counts():
    model = ts.create_model("tsm_mobileones4_1x1x16_k400").eval()
    model.reparameterize()
    assert ts.count_params(model) == 13_608_952
    flops = ts.count_flops(model.backbone, torch.zeros(16, 3, 224, 224))
    assert flops == pytest.approx(47.666e9, rel=0.01)


def test_published_figures_and_weights_are_recorded():
    spec = get_spec("tsm_r50_1x1x8_k400")
    assert (spec.published.top1, spec.published.top5) == (73.18, 90.56)
    assert spec.weights.url.endswith("_20220831-64d69186.pth")
    assert spec.weights.sha256_prefix == "64d69186"
    assert get_spec("tsm_r50_1x1x8_sthv2").num_classes == 174
    assert get_spec("tsn_r50_1x1x8_k400").is_tsn and not spec.is_tsn
    assert get_spec("tsm_mobileones4_1x1x16_k400").shift_segments == 8


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_zoo_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = ts.create_model(name, num_classes=7)
    assert model.num_classes == 7 and model.num_segments == get_spec(name).num_segments
    clip = torch.randn(1, model.num_segments, 3, 64, 64)
    logits = model(clip)
    assert logits.shape == (1, 7) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert model.head.fc.weight.grad is not None
    assert model.backbone.conv1.weight.grad is not None if hasattr(model.backbone, "conv1") else True


def test_classifier_initialisation():
    model = ts.create_model("tsm_r50_1x1x8_k400")
    w, b = model.head.fc.weight, model.head.fc.bias
    assert w.shape == (400, 2048) and torch.count_nonzero(b) == 0
    assert w.std().item() == pytest.approx(0.001, rel=0.05)
    assert model.head.dropout.p == 0.5


def test_partial_bn_freezes_all_but_the_first_norm():
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400")
    model.set_partial_bn(True)
    model.train()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms[0].training and norms[0].weight.requires_grad
    assert not any(m.training or m.weight.requires_grad for m in norms[1:])
    before = norms[1].running_mean.clone()
    model(torch.randn(1, 8, 3, 32, 32))
    assert torch.equal(norms[1].running_mean, before)  # frozen statistics
    model.set_partial_bn(False)
    assert all(m.training and m.weight.requires_grad for m in norms)


def test_clip_length_must_match_a_temporal_model():
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400")
    with pytest.raises(ValueError, match="clips of 8 frames, got clips of 4"):
        model(torch.randn(1, 4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, T, C, H, W\)"):
        model(torch.randn(8, 3, 32, 32))
    tsn = ts.create_model("tsn_mobilenetv2_1x1x8_k400")
    assert tsn(torch.randn(1, 4, 3, 32, 32)).shape == (1, 400)  # TSN takes any T


def test_overrides_and_helpful_errors():
    model = ts.create_model("tsm_r50_1x1x8_k400", num_segments=4, backbone="resnet18", shift_div=4)
    assert model.num_segments == 4 and model.backbone.layer1[0].shift.shift_div == 4
    with pytest.raises(ValueError, match="did you mean 'tsm_r50_1x1x8_k400'"):
        ts.create_model("tsm_r50_1x1x8_k40")
    with pytest.raises(ValueError, match="did you mean 'num_segments'"):
        ts.create_model("tsm_r50_1x1x8_k400", num_segment=4)
    with pytest.raises(ValueError, match="only available for ResNet"):
        ts.create_model("tsm_mobilenetv2_1x1x8_k400", temporal_pool=True)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_segments": 0}, "num_segments must be at least 1, got 0"),
        ({"shift_every": 0}, "shift_every must be at least 1, got 0"),
        ({"shift_div": -1}, "shift_div must be at least 0, got -1"),
        ({"shift_div": 1}, "at least 2 for a bidirectional shift"),
        ({"shift_segments": 0}, "shift_segments must be at least 1"),
        ({"shift_segments": 3}, "shift_segments=3 must divide num_segments=8"),
        ({"temporal_pool": True, "num_segments": 3}, "num_segments must be even, got 3"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\), got -0.1"),
        ({"width": 0}, "width must be at least 1"),
        ({"num_classes": -3}, "num_classes must be at least 1, got -3"),
        ({"input_size": -1}, "input_size must be at least 32"),
        ({"sampling": "foo"}, "sampling must be one of segment, dense, got 'foo'"),
        ({"sampling": "dense", "twice_sample": True}, "dense sampling has none"),
        ({"shift_place": "foo"}, "shift_place must be one of blockres, block"),
        ({"shift_direction": "up"}, "shift_direction must be one of"),
        ({"mean": (0.5,)}, r"mean must be three \(R, G, B\) values, got \(0.5,\)"),
        ({"std": (0.0, 0.0, 0.0)}, "std must be three .* above 0"),
    ],
)
def test_option_values_no_model_can_have_are_refused_before_building(options, message):
    with pytest.raises(ValueError, match=message):
        ts.create_model("tsm_r50_1x1x8_k400", **options)


def test_bad_names_and_clips_get_clear_errors():
    with pytest.raises(TypeError, match="model name must be a string, got int"):
        ts.create_model(5)
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400")
    with pytest.raises(TypeError, match="float clip"):
        model(torch.zeros(1, 8, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no clip"):
        model(torch.zeros(0, 8, 3, 32, 32))


def test_checkpoint_round_trip_and_strict_mismatch(tmp_path):
    torch.manual_seed(0)
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=5).eval()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    loaded = ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=5, checkpoint=path).eval()
    clip = torch.randn(1, 8, 3, 32, 32)
    torch.testing.assert_close(loaded(clip), model(clip), rtol=0, atol=0)
    wrong_shape = r"wrong shape for 2 keys.*head\.fc\.weight \(5, 1280\) vs \(400, 1280\)"
    with pytest.raises(ValueError, match=wrong_shape):
        ts.create_model("tsm_mobilenetv2_1x1x8_k400", checkpoint=path)
    with pytest.raises(ValueError, match="missing .* keys: backbone.conv1.weight"):
        ts.create_model("tsm_r50_1x1x8_k400", num_classes=5, checkpoint=path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        ts.create_model("tsm_r50_1x1x8_k400", checkpoint=tmp_path / "nope.pth")


class _RunsCode:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _RunsCode()}, f)
    with pytest.raises(ValueError, match="refusing to load"):
        ts.create_model("tsm_mobilenetv2_1x1x8_k400", checkpoint=path)
    assert not (tmp_path / "PWNED").exists()
