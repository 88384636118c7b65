"""`tsm demo` at a reduced size: TSM must beat the same network without shifts by a clear margin."""

import json

from temporalshift.cli import main


def test_quick_demo_tsm_beats_tsn(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TSM_HOME", str(tmp_path / "home"))
    assert main(["demo", "--quick", "--json", "--out", str(tmp_path / "runs"), "--set", "runtime.progress=false"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)  # stdout holds the JSON and nothing else
    tsm, tsn = results["tsm"]["top1"], results["tsn"]["top1"]
    assert 0 <= tsn <= 1 and 0 <= tsm <= 1
    assert tsm >= 0.75, results
    assert tsm - tsn >= 0.3, results  # TSN cannot tell a clip from its reversal: ~50% at best
    assert results["tsm"]["params"] == results["tsn"]["params"]
    assert results["tsm"]["flops"] == results["tsn"]["flops"]  # the shift is free
    assert "epoch 5/5" in captured.err  # progress went to stderr


def test_demo_replaces_only_its_own_runs_and_checks_before_training(tmp_path, capsys):
    from temporalshift.engine.demo import DEMO_MARK, _claim

    out = tmp_path / "runs"
    (out / "tsn").mkdir(parents=True)
    (out / "tsn" / "notes.txt").write_text("mine")
    assert main(["demo", "--quick", "--out", str(out)]) == 1  # refused at once: nothing trained
    assert "did not make" in capsys.readouterr().err and not (out / "tsm").exists()
    assert (out / "tsn" / "notes.txt").read_text() == "mine"
    _claim(out / "tsm")  # an earlier demo run (marked) is replaced
    (out / "tsm" / "epoch_001.pt").write_bytes(b"old")
    _claim(out / "tsm")
    assert sorted(p.name for p in (out / "tsm").iterdir()) == [DEMO_MARK]
