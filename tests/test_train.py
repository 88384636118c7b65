"""The training loop as a user runs it: `tsm train`, checkpoints, logs, resume after SIGKILL, fine-tuning."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import temporalshift as ts
from temporalshift.cli import main
from temporalshift.engine.checkpoint import epoch_checkpoints, load_training_state
from temporalshift.engine.config import load_config
from temporalshift.engine.logs import read_log
from temporalshift.engine.train import build_model


def test_train_writes_checkpoints_logs_and_curves(tiny_recipe, tmp_path, capsys):
    work = tmp_path / "run"
    assert main(["train", str(tiny_recipe(work, epochs=3)), "--set", "runtime.val_every=1"]) == 0
    out = capsys.readouterr().out
    assert "epoch 3/3" in out and "val top-1" in out and f"checkpoints and logs in {work}" in out
    assert [p.name for p in epoch_checkpoints(work)] == ["epoch_002.pt", "epoch_003.pt"]  # keep_checkpoints: 2
    assert (work / "best.pt").exists() and (work / "config.yaml").exists() and (work / "curves.png").stat().st_size
    assert list((work / "tensorboard").glob("events.out.tfevents.*"))
    records = read_log(work / "log.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2] and all("val_top1" in r for r in epochs)
    assert any(r["kind"] == "train" and {"loss", "lr", "clips_per_s"} <= set(r) for r in records)
    state = load_training_state(work / "epoch_003.pt")  # weights_only=True
    assert state["epoch"] == 2 and set(state["rng"]) >= {"torch", "python", "numpy"}
    assert state["config"]["model"]["overrides"]["width"] == 8
    cfg = load_config(work / "config.yaml")
    model = ts.create_model(cfg.model.name, num_classes=8, checkpoint=work / "best.pt", **cfg.model.overrides)
    assert model(torch.zeros(1, 4, 3, 32, 32)).shape == (1, 8)
    assert not list(work.glob(".*.part*"))


def _losses(work):
    return [r["train_loss"] for r in read_log(work / "log.jsonl") if r["kind"] == "epoch"]


def test_resume_after_sigkill_continues_the_same_curve(tiny_recipe, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    recipe = tiny_recipe(straight, epochs=4, train=6)
    cmd = [sys.executable, "-m", "temporalshift", "train"]
    subprocess.run([*cmd, str(recipe)], check=True, env=env, capture_output=True, timeout=600)
    recipe_k = tiny_recipe(killed, epochs=4, train=6)
    proc = subprocess.Popen([*cmd, str(recipe_k)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until epoch 2 is under way, then kill -9 mid-epoch
        log = killed / "log.jsonl"
        if log.exists() and any(r.get("epoch") == 1 and r["kind"] == "train" for r in read_log(log)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    found = epoch_checkpoints(killed)
    assert [p.name for p in found] == ["epoch_001.pt"]
    for ckpt in killed.glob("*.pt"):  # whatever is there is whole
        torch.load(ckpt, weights_only=True)
    assert main(["train", str(recipe_k), "--resume", str(killed)]) == 0
    assert [p.name for p in epoch_checkpoints(killed)] == ["epoch_003.pt", "epoch_004.pt"]
    assert _losses(killed) == pytest.approx(_losses(straight), rel=1e-5)
    assert len(_losses(killed)) == 4


def test_resume_needs_a_checkpoint(tiny_recipe, tmp_path, capsys):
    assert main(["train", str(tiny_recipe(tmp_path / "x")), "--resume", str(tmp_path / "nothing")]) == 1
    assert "nothing to resume" in capsys.readouterr().err


def test_fine_tuning_with_a_new_number_of_classes(tiny_recipe, tmp_path, capsys):
    work = tmp_path / "pre"
    assert main(["train", str(tiny_recipe(work, epochs=1)), "--set", "model.num_classes=10"]) == 0
    cfg = load_config(tiny_recipe(tmp_path / "ft", epochs=1), [f"model.load_from={work / 'epoch_001.pt'}"])
    model = build_model(cfg)
    pre = torch.load(work / "epoch_001.pt", weights_only=True)["model"]
    assert pre["head.fc.weight"].shape == (10, 64)
    assert torch.equal(model.backbone.conv1.weight, pre["backbone.conv1.weight"])
    assert model.head.fc.weight.shape == (8, 64) and torch.count_nonzero(model.head.fc.bias) == 0
    ft = tmp_path / "ft2"
    assert main(["train", str(tiny_recipe(ft, epochs=1)), "--load-from", str(work / "epoch_001.pt")]) == 0
    assert main(["train", str(tiny_recipe(tmp_path / "ft3", epochs=1)), "--set", "model.num_classes=3"]) == 1
    assert "labels up to 7, but the model has 3 classes" in capsys.readouterr().err


def test_bf16_and_channels_last_and_accumulation_run(tiny_recipe, tmp_path):
    recipe = tiny_recipe(tmp_path / "amp", epochs=1)
    sets = ["runtime.amp=bf16", "runtime.channels_last=true", "optim.accumulate=2", "runtime.deterministic=true"]
    assert main(["train", str(recipe), "--set", *sets]) == 0
    assert main(["train", str(recipe), "--set", "runtime.amp=fp16", "runtime.work_dir=" + str(tmp_path / "f")]) == 1


def test_json_lines_are_valid_json(tiny_recipe, tmp_path):
    work = tmp_path / "j"
    main(["train", str(tiny_recipe(work, epochs=1))])
    for line in (work / "log.jsonl").read_text().splitlines():
        json.loads(line)


def test_auto_scale_lr_scales_with_the_total_batch(tiny_recipe, tmp_path, capsys):
    recipe = tiny_recipe(tmp_path / "s", epochs=1)  # lr 0.05 for a batch of 8
    assert main(["train", str(recipe), "--auto-scale-lr", "--set", "data.batch_size=4"]) == 0
    assert "total batch 4, lr 0.025," in capsys.readouterr().out


def test_a_used_work_dir_is_refused_and_resume_skips_a_damaged_last_checkpoint(tiny_recipe, tmp_path, capsys):
    work = tmp_path / "run"
    recipe = tiny_recipe(work, epochs=2)
    assert main(["train", str(recipe)]) == 0
    before = {p.name: p.read_bytes() for p in work.glob("*.pt")}
    capsys.readouterr()
    assert main(["train", str(recipe)]) == 1  # no --resume: the earlier run's checkpoints are not overwritten
    err = capsys.readouterr().err
    assert "already holds a run (epoch_002.pt)" in err and f"--resume {work}" in err
    assert {p.name: p.read_bytes() for p in work.glob("*.pt")} == before
    (work / "epoch_002.pt").write_bytes(before["epoch_002.pt"][:300])  # the last one damaged
    assert main(["train", str(recipe), "--resume", str(work), "--set", "schedule.epochs=3"]) == 0
    out, err = capsys.readouterr()
    assert "epoch_002.pt cannot be read" in err and "resuming from epoch_001.pt instead" in err
    assert (work / "epoch_003.pt").is_file()  # resumed from epoch 1's checkpoint and ran epochs 2 and 3


def test_resuming_with_another_model_says_what_does_not_fit(tiny_recipe, tmp_path, capsys):
    work = tmp_path / "run"
    assert main(["train", str(tiny_recipe(work, epochs=1))]) == 0
    capsys.readouterr()
    code = main(["train", str(tiny_recipe(work, epochs=2)), "--resume", str(work), "--set", "model.num_classes=10"])
    err = capsys.readouterr().err
    assert code == 1 and "--resume continues" in err and "cannot change model.num_classes" in err
    assert len(err.strip().splitlines()) == 1
    assert "num_classes: 8" in (work / "config.yaml").read_text()  # the refused resume left the run's config alone
    (work / "config.yaml").write_text((work / "config.yaml").read_text().replace("num_classes: 8", "num_classes: 10"))
    code = main(["train", str(tiny_recipe(work, epochs=2)), "--resume", str(work)])  # a config edited by hand
    err = capsys.readouterr().err
    assert code == 1 and "was trained with other settings: model.num_classes 8 -> 10" in err


def test_resume_continues_with_the_runs_own_config_and_lr(tiny_recipe, tmp_path, capsys):
    from temporalshift.engine.train import train

    work = tmp_path / "run"
    recipe = tiny_recipe(work, epochs=1)  # lr 0.05 for a batch of 8: 0.025 for 4
    assert main(["train", str(recipe), "--auto-scale-lr", "--set", "data.batch_size=4"]) == 0
    capsys.readouterr()
    # the command line of the README: neither the batch size nor --auto-scale-lr repeated
    assert main(["train", str(recipe), "--resume", str(work), "--set", "schedule.epochs=2", "data.workers=0"]) == 0
    out = capsys.readouterr().out
    assert "total batch 4, lr 0.025," in out and "epoch 2/2" in out
    state = load_training_state(work / "epoch_002.pt")
    assert state["base_lr"] == 0.025 and state["auto_scale_lr"] and len(state["rng_per_rank"]) == 1
    assert main(["train", str(recipe), "--resume", str(work), "--set", "optim.lr=1"]) == 1
    assert "cannot change optim.lr" in capsys.readouterr().err
    assert main(["train", str(recipe), "--resume", str(work), "--work-dir", str(tmp_path / "x")]) == 2
    with pytest.raises(ValueError, match="other settings: data.batch_size 4 -> 8; optim.lr 0.05 -> 0.5"):
        train(load_config(recipe, ["optim.lr=0.5"]), resume=work)


def test_a_fresh_run_replaces_logs_of_one_that_saved_nothing_and_takes_paths_as_given(tiny_recipe, tmp_path, capsys):
    work = tmp_path / "exp #2"  # YAML would read '#' as a comment: the folder is named as given
    (work / "tensorboard").mkdir(parents=True)
    (work / "log.jsonl").write_text('{"kind": "train", "epoch": 0, "step": 4, "loss": 9.9}\n{"kind": "tr')
    assert main(["train", str(tiny_recipe(tmp_path / "elsewhere", epochs=1)), "--work-dir", str(work)]) == 0
    assert "held the logs of a run that saved no checkpoint" in capsys.readouterr().out
    records = read_log(work / "log.jsonl")
    assert records and all(r.get("loss") != 9.9 for r in records) and (work / "epoch_001.pt").is_file()
    with open(work / "log.jsonl", "a") as f:  # a crash mid-append tears the last line
        f.write('\n{"kind": "train", "ep')
    assert main(["train", str(tiny_recipe(tmp_path / "elsewhere", epochs=1)), "--resume", str(work),
                 "--set", "schedule.epochs=2"]) == 0  # fmt: skip
    assert [r["epoch"] for r in read_log(work / "log.jsonl") if r["kind"] == "epoch"] == [0, 1]


def test_fine_tuning_from_a_checkpoint_of_another_width_names_a_key(tiny_recipe, tmp_path):
    from temporalshift.engine.train import load_for_finetuning

    work = tmp_path / "w8"
    assert main(["train", str(tiny_recipe(work, epochs=1))]) == 0
    wider = ts.create_model("tsm_r50_1x1x8_k400", num_classes=8, backbone="resnet18", width=16, num_segments=4)
    with pytest.raises(ValueError, match=r"another width or backbone\?\): backbone.conv1.weight is \(8, 3, 7, 7\)"):
        load_for_finetuning(wider, str(work / "epoch_001.pt"))


def test_a_failed_checkpoint_write_says_so_in_one_line(tmp_path, monkeypatch):
    from temporalshift.engine.checkpoint import save_atomic

    def disk_full(*_a, **_k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 864704 vs 864592")

    (tmp_path / "epoch_001.pt").write_bytes(b"the previous one")
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match=r"could not write .*epoch_001.pt \(the write failed; \d+ MB free there\); the"):
        save_atomic({"x": 1}, tmp_path / "epoch_001.pt")
    assert (tmp_path / "epoch_001.pt").read_bytes() == b"the previous one" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    "sets, message",
    [
        (["schedule.epochs=0"], "schedule.epochs must be at least 1"),
        (["optim.lr=nan"], "optim.lr must be a positive number"),
        (["schedule.policy=foo"], "schedule.policy must be 'step' or 'cosine'"),
        (["data.scales=[]"], "data.scales must be a non-empty list"),
        (["data.scales=[1,"], "is not a valid value"),
        (["model.overrides.shift_div=abc"], "model option shift_div must be an integer, got 'abc'"),
    ],
)
def test_bad_settings_get_one_line_before_anything_is_written(tiny_recipe, tmp_path, capsys, sets, message):
    work = tmp_path / "never"
    assert main(["train", str(tiny_recipe(work, epochs=1)), "--set", *sets]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not list(work.glob("*.pt")) and not (work / "config.yaml").exists()


def test_a_broken_recipe_file_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("model: [unclosed\n")
    assert main(["train", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "broken.yaml is not valid YAML" in err and "line 2" in err and len(err.strip().splitlines()) == 1
