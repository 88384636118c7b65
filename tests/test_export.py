"""ONNX and TorchScript exports match PyTorch; `tsm predict --onnx` runs the exported file."""

import json

import pytest
import torch

import temporalshift as ts
from temporalshift.cli import main
from temporalshift.export import export_onnx, export_torchscript, load_onnx


def _nontrivial(model):
    """A classifier scaled so the logits spread like a trained model's (std ~10): parity on ~0 logits
    would prove nothing, and on random huge ones would only measure float32 rounding."""
    g = torch.Generator().manual_seed(0)
    spec = model.spec
    clip = torch.randn(1, spec.num_segments, 3, spec.input_size, spec.input_size, generator=g)
    with torch.no_grad():
        model.eval().head.fc.weight.normal_(0, 1, generator=g)
        model.head.fc.weight.mul_(10 / model(clip).std())
    return model


@pytest.mark.parametrize("name", ["tsm_r50_1x1x8_k400", "tsm_mobilenetv2_1x1x8_k400"])
def test_onnx_parity_for_the_published_models(name, tmp_path):
    model = _nontrivial(ts.create_model(name))
    report = export_onnx(model, tmp_path / "m.onnx", dynamic_batch=True)
    assert report.max_abs_diff <= 1e-4
    session, spec = load_onnx(tmp_path / "m.onnx")
    assert spec == model.spec
    import onnx

    ops = {node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "Concat" in ops and not any(op.startswith("TemporalShift") for op in ops)  # standard operators only


def test_torchscript_parity_and_free_batch(tmp_path):
    model = _nontrivial(ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=12)).train()
    model.backbone.eval()  # a linear probe: the backbone frozen under a training head
    report = export_torchscript(model, tmp_path / "m.pt")  # traced in eval mode...
    assert report.max_abs_diff <= 1e-4
    assert model.training and model.head.training and not model.backbone.training  # ...modes left as they were
    assert ts.count_flops(model, torch.randn(1, 8, 3, 32, 32)) > 0 and not model.backbone.training
    model.eval()
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    clip = torch.randn(3, 8, 3, 64, 64)
    torch.testing.assert_close(loaded(clip), model(clip), atol=1e-4, rtol=1e-4)


def test_cli_export_reparameterized_mobileone_and_predict_with_onnx(tmp_path, numbered_videos, capsys):
    model = ts.create_model("tsm_mobileones4_1x1x16_k400", backbone="mobileone_s0", num_classes=8,
                            input_size=64, labels="moving_digits", test_crops="center", twice_sample=False)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-like scales: random MobileOne activations grow to ~1e4 otherwise
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.1)
    _nontrivial(model)
    ckpt = tmp_path / "mo.pt"
    torch.save({"format": "temporalshift/1", "model_name": model.name, "model": model.state_dict(),
                "overrides": ts.models.zoo.spec_overrides(model)}, ckpt)  # fmt: skip
    onnx_path = tmp_path / "mo.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--reparameterize", "-o", str(onnx_path)]) == 0
    assert "max |difference| vs PyTorch" in capsys.readouterr().out
    assert main(["predict", str(numbered_videos["mp4"]), "--onnx", str(onnx_path), "--json"]) == 0
    onnx_pred = capsys.readouterr().out
    assert main(["predict", str(numbered_videos["mp4"]), "--checkpoint", str(ckpt), "--json"]) == 0
    torch_pred = capsys.readouterr().out
    a, b = json.loads(onnx_pred), json.loads(torch_pred)
    assert a["labels"] == b["labels"] and a["scores"] == pytest.approx(b["scores"], abs=1e-4)
    assert main(["export", "--model", "tsm_mobilenetv2_1x1x8_k400", "--format", "torchscript",
                 "-o", str(tmp_path / "t.pt")]) == 0  # fmt: skip


def test_export_needs_a_model(capsys):
    assert main(["export", "-o", "x.onnx"]) == 2
    assert "give --model NAME" in capsys.readouterr().err


def test_export_never_writes_over_its_checkpoint_and_predict_names_what_an_onnx_file_is(tmp_path, capsys):
    model = ts.create_model("tsm_mobilenetv2_1x1x8_k400", num_classes=3, input_size=64)
    ckpt = tmp_path / "mine.pt"
    torch.save({"format": "temporalshift/1", "model_name": model.name, "model": model.state_dict(),
                "overrides": ts.models.zoo.spec_overrides(model)}, ckpt)  # fmt: skip
    before = ckpt.read_bytes()
    assert main(["export", "--checkpoint", str(ckpt), "-o", str(ckpt), "--format", "torchscript"]) == 2
    assert "-o is the checkpoint itself" in capsys.readouterr().err and ckpt.read_bytes() == before
    video = tmp_path / "v.mp4"
    video.write_bytes(b"unused")
    assert main(["predict", str(video), "--onnx", str(ckpt)]) == 1  # not ONNX at all
    err = capsys.readouterr().err
    assert "is not an ONNX model onnxruntime can load" in err and len(err.strip().splitlines()) == 1
    online = tmp_path / "online.onnx"
    assert main(["export", "--model", "tsm_mobilenetv2_online_1x1x8_k400", "--online", "-o", str(online)]) == 0
    assert main(["predict", str(video), "--onnx", str(online)]) == 1
    assert "is an online step (tsm export --online)" in capsys.readouterr().err


def test_predict_with_a_fixed_batch_onnx_runs_its_views_in_chunks(tmp_path, numbered_videos, capsys):
    """Exported without --dynamic-batch the graph takes one clip; a 2-clip x 3-crop protocol still runs."""
    model = ts.create_model("tsm_r50_1x1x8_k400", backbone="resnet18", width=16, num_classes=8, input_size=64,
                            labels="moving_digits", test_clips=2, test_crops="three", twice_sample=False)  # fmt: skip
    _nontrivial(model)
    ckpt = tmp_path / "r18.pt"
    torch.save({"format": "temporalshift/1", "model_name": model.name, "model": model.state_dict(),
                "overrides": ts.models.zoo.spec_overrides(model)}, ckpt)  # fmt: skip
    onnx_path = tmp_path / "r18.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "-o", str(onnx_path)]) == 0
    session, _ = load_onnx(onnx_path)
    assert session.get_inputs()[0].shape[0] == 1
    capsys.readouterr()
    assert main(["predict", str(numbered_videos["mp4"]), "--onnx", str(onnx_path), "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["predict", str(numbered_videos["mp4"]), "--checkpoint", str(ckpt), "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert len(b["frames"]) == 2 and a["labels"] == b["labels"]
    assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
