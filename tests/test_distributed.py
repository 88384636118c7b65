"""`torchrun --nproc_per_node 2` (gloo, CPU) trains like one process with the same global batch."""

import os
import shutil
import subprocess
import sys

import torch

from temporalshift.engine.logs import read_log

SETTINGS = [
    "data.digits_per_class=[32,24,2]", "model.overrides.width=16", "model.overrides.input_size=48",
    "data.input_size=48", "schedule.epochs=8", "optim.lr=0.1",
]  # fmt: skip


def _run(cmd, env, attempts=2):
    """One retry: a torchrun launch here once died at start with SIGABRT, never twice."""
    for attempt in range(attempts):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode == 0 or attempt == attempts - 1:
            return proc


def _final(work):
    epochs = [r for r in read_log(work / "log.jsonl") if r["kind"] == "epoch"]
    return epochs[-1]["val_top1"], epochs[-1]["train_loss"]


def test_two_processes_match_one_with_the_same_global_batch(tiny_recipe, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    one, two = tmp_path / "one", tmp_path / "two"
    recipe = tiny_recipe(tmp_path / "unused", epochs=8, train=32, val=24, test=2)
    single = _run([sys.executable, "-m", "temporalshift", "train", str(recipe), "--set", *SETTINGS,
                   "data.batch_size=16", f"runtime.work_dir={one}"], env)  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    for _ in range(2):
        shutil.rmtree(two, ignore_errors=True)
        ddp = _run([torchrun, "--nproc_per_node", "2", "-m", "temporalshift", "train", str(recipe), "--set",
                    *SETTINGS, "data.batch_size=8", f"runtime.work_dir={two}"], env, attempts=1)  # fmt: skip
        if ddp.returncode == 0:
            break
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert "2 process(es)" in ddp.stdout and "total batch 16" in ddp.stdout
    acc1, loss1 = _final(one)
    acc2, loss2 = _final(two)
    # Same data order, same averaged gradients; only BatchNorm sees 8 clips per process instead
    # of 16, so the two runs differ by training noise and no more.
    assert acc1 >= 0.8 and acc2 >= 0.8, (acc1, acc2)
    assert abs(acc1 - acc2) <= 0.08, (acc1, acc2)
    assert abs(loss1 - loss2) <= 0.3 * max(loss1, loss2), (loss1, loss2)
    assert len(list(two.glob("epoch_*.pt"))) == 2  # only rank 0 writes
    from temporalshift.engine.checkpoint import load_training_state

    rngs = load_training_state(two / "epoch_008.pt")["rng_per_rank"]  # each rank's own, for an exact resume
    assert len(rngs) == 2 and not torch.equal(rngs[0]["torch"], rngs[1]["torch"])
    assert ddp.stdout.count("done in") == 1  # the final line from rank 0 only
