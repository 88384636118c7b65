"""The `tsm` command, called in-process the way a user calls it, plus the installed entry point."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from temporalshift.cli import main


def test_models_json_lists_every_model_with_integer_counts(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert len(rows) == 15
    assert by_name["tsm_r50_1x1x8_k400"]["params"] == 24_327_632
    assert by_name["tsm_mobilenetv2_1x1x8_k400"]["params"] == 2_736_272
    assert all(type(r["params"]) is int and type(r["flops"]) is int for r in rows)
    assert by_name["tsm_r50_1x1x8_k400"]["top1"] == 73.18
    # what `tsm test` runs (twice-sampled clips x ten crops), beside mmaction2's wording of it
    assert by_name["tsm_r50_1x1x8_k400"]["test_views"] == "2 clips x 10 crops"
    assert by_name["tsm_r50_1x1x8_k400"]["protocol"] == "8 clips x 10 crop"
    assert by_name["tsm_r50_1x1x8_sthv2"]["test_views"] == "2 clips x 3 crops"


def test_models_table_with_pattern(capsys):
    assert main(["models", "tsm_r50_nl_*"]) == 0
    out = capsys.readouterr().out
    assert "tsm_r50_nl_dot_1x1x8_k400" in out and "31.68M" in out and "61.30G" in out
    assert "tsm_mobilenetv2" not in out
    header = out.splitlines()[0]
    assert "params" in header and "FLOPs" in header and "top-1" in header


def test_pattern_without_match_is_a_usage_error(capsys):
    assert main(["models", "nothing_*"]) == 2
    err = capsys.readouterr().err
    assert "error: no model matches 'nothing_*'" in err and "Traceback" not in err


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code == 2


def _tsm_executable() -> str:
    exe = Path(sys.executable).parent / "tsm"
    if not exe.exists():
        pytest.fail(f"the `tsm` entry point is not installed next to {sys.executable}; pip install -e .")
    return str(exe)


def test_installed_entry_point_runs():
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([_tsm_executable(), "models", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert {r["name"] for r in json.loads(out.stdout)} >= {"tsm_r50_1x1x8_k400", "tsn_r50_1x1x8_k400"}
    version = subprocess.run([_tsm_executable(), "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("temporalshift ")
