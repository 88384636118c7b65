"""`tsm predict` and `temporalshift.predict` on generated videos, with a corrupt file in the folder."""

import json
import shutil

import numpy as np
import pytest
import torch

import temporalshift as ts
from temporalshift.cli import main
from temporalshift.data.decode import open_video
from temporalshift.predict import Predictor, class_names


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory, numbered_videos):
    """A small model on the moving-digits classes, saved in our format (rebuildable from the file)."""
    torch.manual_seed(0)
    model = ts.create_model("tsm_r50_1x1x8_k400", backbone="resnet18", width=8, num_classes=8, input_size=56,
                            labels="moving_digits", test_crops="center", twice_sample=False)  # fmt: skip
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1)  # not ~0: the ranking should mean something
    path = tmp_path_factory.mktemp("ckpt") / "digits.pt"
    torch.save({"format": "temporalshift/1", "model_name": model.name, "model": model.state_dict(),
                "overrides": ts.models.zoo.spec_overrides(model)}, path)  # fmt: skip
    return model, path


def test_predict_api_returns_prediction_objects(digits_checkpoint, numbered_videos):
    model, _ = digits_checkpoint
    pred = ts.predict(numbered_videos["mp4"], model=model, topk=3)
    assert isinstance(pred, ts.Prediction) and pred.ok and len(pred.labels) == 3
    assert pred.labels[0] in class_names("moving_digits", 8)
    assert pred.scores == sorted(pred.scores, reverse=True) and 0 < sum(pred.scores) <= 1.0001
    assert pred.frames == [[3, 11, 18, 26, 33, 41, 48, 56]]  # the model's test protocol: 8 segment centres
    assert json.loads(pred.to_json())["source"].endswith("n.mp4")
    with torch.inference_mode():
        expected = model.eval()(Predictor(model).load(str(numbered_videos["mp4"]))[0]).softmax(-1).mean(0)
    assert pred.indices[0] == int(expected.argmax())
    views = Predictor(model).load(str(numbered_videos["mp4"]))[0]
    fast, plain = Predictor(model), Predictor(model, fast=False)  # fast: BN folded, channels-last
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.model.modules())
    assert np.allclose(fast.scores(views), plain.scores(views), atol=1e-5)
    many = ts.predict([numbered_videos["mp4"], numbered_videos["mkv"]], model=model)
    assert [p.ok for p in many] == [True, True]
    missing = ts.predict(numbered_videos["mp4"].parent / "nope.mp4", model=model)  # one file: one result
    assert isinstance(missing, ts.Prediction) and not missing.ok and "nope.mp4" in missing.error
    model.train()
    Predictor(model), Predictor(model, fast=False)  # each runs a copy: the caller's model keeps its mode
    assert model.training
    model.eval()
    for bad, message in (({"topk": 0}, "topk must be a whole number of at least 1, got 0"), ({"topk": 1.5}, "got 1.5"),
                         ({"clips": 0}, "clips must be a whole number"), ({"clips": 1.5}, "got 1.5")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            ts.predict(numbered_videos["mp4"], model=model, **bad)


def test_cli_predict_file_and_folder_with_a_corrupt_video(digits_checkpoint, numbered_videos, tmp_path, capsys):
    _, ckpt = digits_checkpoint
    assert main(["predict", str(numbered_videos["mp4"]), "--checkpoint", str(ckpt), "--topk", "3"]) == 0
    out = capsys.readouterr().out
    assert "n.mp4" in out and "probability" in out and out.count("%") == 3
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(numbered_videos["mp4"], folder / "a.mp4")
    shutil.copy(numbered_videos["vfr"], folder / "b.mp4")
    (folder / "c.mp4").write_text("this is not a video")
    code = main(["predict", str(folder), "--checkpoint", str(ckpt), "--workers", "0"])
    captured = capsys.readouterr()
    assert code == 1
    assert "a.mp4" in captured.out and "b.mp4" in captured.out and "c.mp4" not in captured.out
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "c.mp4" in errors[0] and "Traceback" not in captured.err
    assert main(["predict", str(folder / "*.mp4"), "--checkpoint", str(ckpt), "--json", "--workers", "0"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["source"].rsplit("/", 1)[1] for line in lines) == ["a.mp4", "b.mp4", "c.mp4"]
    assert [line["error"] is None for line in lines] == [line["source"].endswith(("a.mp4", "b.mp4")) for line in lines]
    assert main(["predict", str(folder), "--onnx", str(folder / "m.onnx"), "--checkpoint", str(ckpt)]) == 2
    assert "drop --model/--checkpoint" in capsys.readouterr().err


def test_cli_predict_csv_and_annotated_video(digits_checkpoint, numbered_videos, tmp_path, capsys):
    _, ckpt = digits_checkpoint
    out_video = tmp_path / "annotated.mp4"
    args = ["predict", str(numbered_videos["mp4"]), "--checkpoint", str(ckpt), "--csv", "--topk", "2"]
    assert main([*args, "--out-video", str(out_video)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "video,rank,label,probability" and len(lines) == 3
    with open_video(out_video) as reader, open_video(numbered_videos["mp4"]) as original:
        assert len(reader) == len(original)
        assert reader.get_frames([0])[0, :4].mean() < original.get_frames([0])[0, :4].mean() + 255  # drawn over


def test_annotated_video_of_an_odd_sized_source_and_a_container_h264_cannot_go_in(digits_checkpoint, tmp_path, capsys):
    from temporalshift.data.encode import write_video
    from temporalshift.data.synthetic import numbered_frames

    odd = tmp_path / "odd.mkv"
    write_video(odd, numbered_frames(16, 73, 97), fps=10, codec="ffv1")  # 97x73: 4:2:0 needs even sides
    _, ckpt = digits_checkpoint
    assert main(["predict", str(odd), "--checkpoint", str(ckpt), "--out-video", str(tmp_path / "a.mp4")]) == 0
    with open_video(tmp_path / "a.mp4") as reader:
        assert len(reader) == 16 and reader.get_frames([0]).shape == (1, 74, 98, 3)
    capsys.readouterr()
    assert main(["predict", str(odd), "--checkpoint", str(ckpt), "--out-video", str(tmp_path / "a.webm")]) == 2
    assert "name a .mp4, .mkv, .mov, .avi file, not a.webm" in capsys.readouterr().err  # before any prediction


def test_label_sets():
    assert len(class_names("kinetics400", 400)) == 400 and class_names("kinetics400", 400)[0] == "abseiling"
    assert len(class_names("sthv2", 174)) == 174 and len(class_names("jester", 27)) == 27
    assert class_names(None, 3) == ["class 0", "class 1", "class 2"]
    with pytest.raises(ValueError, match="the label set has 400 classes, the model 10"):
        class_names("kinetics400", 10)


def test_predict_errors_are_one_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "none.mp4"), "--model", "tsm_mobilenetv2_1x1x8_k400"]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path)]) == 1
    assert "no videos found" in capsys.readouterr().err


def test_predict_refuses_to_write_over_its_input_and_odd_numbers(digits_checkpoint, numbered_videos, tmp_path, capsys):
    _, ckpt = digits_checkpoint
    video = tmp_path / "clip.mp4"
    video.write_bytes(numbered_videos["mp4"].read_bytes())
    before = video.read_bytes()
    assert main(["predict", str(video), "--checkpoint", str(ckpt), "--out-video", str(video)]) == 2
    assert "--out-video is the input video itself" in capsys.readouterr().err
    assert video.read_bytes() == before
    for flags, message in ((["--topk", "0"], "--topk must be at least 1"), (["--clips", "0"], "--clips must be")):
        assert main(["predict", str(video), "--checkpoint", str(ckpt), *flags]) == 2
        assert message in capsys.readouterr().err


def test_predict_with_random_weights_says_so(numbered_videos, capsys):
    assert main(["predict", str(numbered_videos["mp4"]), "--model", "tsm_mobilenetv2_1x1x8_k400", "--topk", "1"]) == 0
    assert "random weights" in capsys.readouterr().err
