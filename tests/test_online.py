"""Online TSM: frame-by-frame == offline uni-directional; explicit-cache ONNX; `tsm stream`."""

import json

import pytest
import torch

import temporalshift as ts
from temporalshift.cli import main
from temporalshift.online import OnlineRecognizer, export_online_onnx


def _per_frame_logits(model, clip):
    """Offline frame-t logits (before the average over time)."""
    with torch.no_grad():
        feats = model.backbone(clip.flatten(0, 1))
        return model.head.fc(model.head.pool(feats).flatten(1)).view(clip.shape[0], clip.shape[1], -1)


@pytest.mark.parametrize("name, overrides", [
    ("tsm_mobilenetv2_online_1x1x8_k400", {}),
    ("tsm_r50_1x1x8_k400", {"backbone": "resnet18", "width": 16, "shift_direction": "right"}),
    ("tsm_mobileones4_1x1x16_k400", {"backbone": "mobileone_s0", "shift_direction": "right", "shift_segments": 16}),
])  # fmt: skip
def test_online_equals_offline_frame_by_frame(name, overrides):
    torch.manual_seed(0)
    model = ts.create_model(name, num_classes=10, **overrides).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1)
    t = model.num_segments
    clip = torch.randn(2, t, 3, 64, 64)  # two streams at once
    rec = OnlineRecognizer(model, engine="torch")
    online = torch.stack([rec.step(clip[:, i]) for i in range(t)], 1)
    reference = _per_frame_logits(model, clip)
    # float32 error grows with the logits (random MobileOne weights give ~1e3): 1e-5 of the largest
    tol = {"atol": 1e-5 * max(10.0, reference.abs().max().item()), "rtol": 1e-4}
    torch.testing.assert_close(online, reference, **tol)
    with torch.no_grad():
        torch.testing.assert_close(online.mean(1), model(clip), **tol)  # mean over T == model(clip)
    rec.reset()
    torch.testing.assert_close(rec.step(clip[0, 0]), online[0, 0], **tol)  # a single (3, H, W) frame
    assert rec.smoothed().shape == (10,)


def test_models_a_stream_cannot_reproduce_are_refused():
    with pytest.raises(ValueError, match="needs a uni-directional model"):
        OnlineRecognizer(ts.create_model("tsm_mobilenetv2_1x1x8_k400"))
    with pytest.raises(ValueError, match="no temporal shift"):
        OnlineRecognizer(ts.create_model("tsn_mobilenetv2_1x1x8_k400"))
    online = "tsm_mobilenetv2_online_1x1x8_k400"
    with pytest.raises(ValueError, match="only shift_padding='zero' runs online"):  # it would wrap the future in
        OnlineRecognizer(ts.create_model(online, num_segments=4, shift_padding="circulant"), engine="torch")
    with pytest.raises(ValueError, match="groups of 2 frames"):
        OnlineRecognizer(ts.create_model(online, shift_segments=2), engine="torch")
    with pytest.raises(ValueError, match="window must be at least 1"):
        OnlineRecognizer(ts.create_model(online), window=0, engine="torch")
    rec = OnlineRecognizer(ts.create_model(online), engine="torch")
    with pytest.raises(ValueError, match=r"one frame \(3, H, W\) or one frame per stream"):
        rec.step(torch.zeros(1, 8, 3, 32, 32))  # a clip is not a frame


def test_online_onnx_with_explicit_caches(tmp_path):
    model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400", num_classes=27).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1)
    report = export_online_onnx(model, tmp_path / "online.onnx")
    assert report.max_abs_diff <= 1e-4
    import onnx

    graph = onnx.load(str(tmp_path / "online.onnx")).graph
    assert len(graph.input) == 1 + 10 and len(graph.output) == 1 + 10  # the authors cache 10 blocks


def test_cli_export_online_makes_its_folder(tmp_path, capsys):
    model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400", num_classes=8, input_size=64)
    ckpt = tmp_path / "online.pt"
    torch.save({"format": "temporalshift/1", "model_name": model.name, "model": model.state_dict(),
                "overrides": ts.models.zoo.spec_overrides(model)}, ckpt)  # fmt: skip
    out = tmp_path / "new" / "dir" / "step.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--online", "-o", str(out)]) == 0
    assert out.stat().st_size > 0 and "online step" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(ckpt), "--online", "--dynamic-batch", "-o", str(out)]) == 2
    assert "drop --dynamic-batch" in capsys.readouterr().err


def test_cli_stream_a_video_file(tmp_path, numbered_videos, capsys):
    model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400", num_classes=8, input_size=64, labels="moving_digits")
    ckpt = tmp_path / "online.pt"
    torch.save({"format": "temporalshift/1", "model_name": model.name, "model": model.state_dict(),
                "overrides": ts.models.zoo.spec_overrides(model)}, ckpt)  # fmt: skip
    assert main(["stream", str(numbered_videos["mp4"]), "--checkpoint", str(ckpt), "--json", "--max-frames", "12"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["frame"] for e in events] == list(range(12))
    assert all(0 <= e["score"] <= 1 and e["latency_ms"] > 0 and e["label"] for e in events)
    assert {e["engine"] for e in events} == {"onnxruntime"}  # the default, auto, with the export extra installed
    assert main(["stream", str(numbered_videos["mp4"]), "--model", "tsm_mobilenetv2_1x1x8_k400"]) == 1
    assert "uni-directional" in capsys.readouterr().err


def test_training_an_online_model_streams_unchanged(tiny_recipe, tmp_path, numbered_videos, capsys):
    work = tmp_path / "online_run"
    recipe = tiny_recipe(work, epochs=1)
    assert main(["train", str(recipe), "--set", "model.overrides.shift_direction=right"]) == 0
    capsys.readouterr()
    assert main(["stream", str(numbered_videos["mp4"]), "--checkpoint", str(work / "epoch_001.pt"),
                 "--max-frames", "3"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("frame") == 3 and out.startswith("engine: onnxruntime\n")
    assert main(["stream", str(numbered_videos["mp4"]), "--checkpoint", str(work / "epoch_001.pt"),
                 "--max-frames", "2", "--engine", "torch"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("engine: torch\n")


@pytest.mark.parametrize("spin", [True, False])
def test_onnxruntime_engine_matches_torch_for_several_streams(spin):
    torch.manual_seed(0)
    model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400", num_classes=10, input_size=64).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1)
    a, b = OnlineRecognizer(model, engine="torch"), OnlineRecognizer(model, engine="onnxruntime", spin=spin)
    frames = torch.randn(5, 3, 3, 64, 64)  # 5 steps of 3 streams
    for f in frames:
        torch.testing.assert_close(b.step(f), a.step(f), atol=1e-4, rtol=1e-4)
    a.reset()
    b.reset()
    torch.testing.assert_close(b.step(frames[0, 0]), a.step(frames[0, 0]), atol=1e-4, rtol=1e-4)


def test_auto_engine_is_onnxruntime_when_installed_else_torch(monkeypatch, tmp_path):
    model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400", num_classes=10, input_size=64).eval()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    rec = OnlineRecognizer(model)
    assert rec.engine == "onnxruntime" and rec.session is not None
    assert list(tmp_path.iterdir()) == []  # the exported step lives in the session, not in a left-over file
    monkeypatch.setattr("temporalshift.online.onnxruntime_installed", lambda: False)
    rec = OnlineRecognizer(model)
    assert rec.engine == "torch" and rec.session is None
    assert rec.step(torch.randn(3, 64, 64)).shape == (10,)
    with pytest.raises(ValueError, match="engine must be one of auto, torch, onnxruntime"):
        OnlineRecognizer(model, engine="tensorrt")


def test_onnxruntime_engine_follows_a_change_of_frame_size():
    torch.manual_seed(0)
    model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400", num_classes=10, input_size=64).eval()
    a, b = OnlineRecognizer(model, engine="torch"), OnlineRecognizer(model, engine="onnxruntime", spin=False)
    for size in (64, 64, 96, 96, 64):  # a new size is a new stream: both start from an empty past
        frame = torch.randn(2, 3, size, size)
        torch.testing.assert_close(b.step(frame), a.step(frame), atol=1e-4, rtol=1e-4)
    assert b._frame_size == (64, 64)


def test_torch_engine_starts_a_new_past_for_another_frame_size():
    torch.manual_seed(0)
    model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400", num_classes=10, input_size=64).eval()
    rec, fresh = OnlineRecognizer(model, engine="torch"), OnlineRecognizer(model, engine="torch")
    small, large = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 96, 96)
    rec.step(small)
    rec.step(large)  # no longer a crash on the 64x64 caches
    first = fresh.step(small)
    torch.testing.assert_close(rec.step(small), first, atol=0, rtol=1e-6)  # back to 64x64: an empty past
    assert not torch.allclose(rec.step(small), first, rtol=1e-3, atol=0)  # the same frame again: now it has a past
