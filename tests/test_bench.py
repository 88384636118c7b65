"""`tsm bench` runs end to end and reports every figure (timings are never asserted on)."""

import json
import statistics

import pytest

from temporalshift.cli import main


def test_bench_reports_ratios_memory_fast_paths_and_online(capsys, tmp_path):
    args = ["bench", "--model", "tsm_mobilenetv2_1x1x8_k400", "--runs", "2", "--warmup", "1", "--batch", "1",
            "--train-batch", "1", "--plot", str(tmp_path / "bench.png"), "--json"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    inference = report["inference"]["batch_1"]
    assert {"tsm", "tsn", "torchvision", "tsm_fast", "tsn_fast", "tsm/tsn", "tsm/tsn fast", "tsm/torchvision"} <= set(
        inference
    )
    assert len(inference["tsm"]["samples_ms"]) == 2
    assert inference["tsm"]["median_ms"] > 0 and inference["tsm"]["videos_per_s"] > 0
    peak = report["conv_peak"]
    assert len(peak["shapes"]) == 7 and peak["gmacs_per_s"] == max(peak["shapes"].values()) > 0
    for k in ("tsm", "tsm_fast"):  # the backbone's multiply-adds per second, and that against the peak
        v = inference[k]
        assert v["gmacs_per_s"] == pytest.approx(report["flops"] / v["median_ms"] / 1e6)
        # against the peak convolution timed in the same rounds: the median of the per-round ratios
        best = peak["best"]
        macs = 8 * best[1] * best[2] * best[2] * best[0] * best[3] ** 2
        rounds = zip(v["samples_ms"], inference["conv_peak_samples_ms"], strict=True)
        per_round = [report["flops"] * p / macs / m for m, p in rounds]
        assert v["of_conv_peak"] == pytest.approx(statistics.median(per_round))
    assert inference["conv_peak_gmacs_per_s"] > 0
    assert inference["tsm"]["peak_memory_mb"] is None or inference["tsm"]["peak_memory_mb"] >= 0
    assert report["train"]["tsm/tsn"] > 0
    for ratios in (inference, report["train"]):  # each paired ratio lies within its rounds' quartiles
        q1, q3 = ratios["tsm/tsn quartiles"]
        assert q1 <= ratios["tsm/tsn"] <= q3
    assert {"default", "bn_folding", "channels_last", "optimize_for_inference", "bf16_autocast"} <= set(
        report["fast_paths"]
    )
    assert report["online"]["torch"]["median_ms"] > 0 and report["online"]["onnxruntime"]["median_ms"] > 0
    assert report["params"] == 2_736_272 and (tmp_path / "bench.png").stat().st_size > 0
    data = report["data"]
    assert set(data["clips_per_s"]) == {"workers_0", "workers_1", "workers_2"}
    assert data["bottleneck"] in ("data", "model") and data["model_train_clips_per_s"] > 0


def test_bench_table(capsys, tmp_path):
    plot = tmp_path / "new" / "one_panel.png"  # one batch, no fast paths: a figure of one panel, in a new folder
    assert main(["bench", "--model", "tsn_mobilenetv2_1x1x8_k400", "--runs", "1", "--warmup", "0", "--batch", "1",
                 "--train-batch", "0", "--no-fast-paths", "--plot", str(plot)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "TSM/TSN time" in out and "videos/s" in out
    assert "best fp32 convolution" in out and "GMAC/s  of peak" in out
    assert plot.stat().st_size > 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch", "0"], "--batch must be at least 1"),
        (["--runs", "0"], "--runs must be at least 1"),
        (["--train-batch", "-1"], "--train-batch must be at least 0"),
        (["--threads", "-1"], "--threads must be at least 1"),
        (["--plot", "figure.txt"], "name a .png file"),
        (["--plot", "/proc/figure.png"], "cannot be written"),
    ],
)
def test_bench_refuses_bad_numbers_and_plot_names_before_running(capsys, flags, message):
    assert main(["bench", "--model", "tsm_mobilenetv2_1x1x8_k400", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.startswith("usage: tsm bench ")  # its own usage line


def test_paired_ratio_is_the_median_of_per_round_ratios_and_rounds_alternate_order():
    import torch

    from temporalshift.bench import _ratio_text, paired_ratio, paired_ratio_quartiles, time_interleaved

    times = {"a": {"samples_ms": [10.0, 30.0, 12.0, 22.0]}, "b": {"samples_ms": [10.0, 20.0, 10.0, 20.0]}}
    assert paired_ratio(times, "a", "b") == 1.15  # per round 1.0, 1.5, 1.2, 1.1
    q1, q3 = paired_ratio_quartiles(times, "a", "b")
    assert q1 == pytest.approx(1.075) and q3 == pytest.approx(1.275)  # the rounds' noise, shown beside it
    times["a/b"], times["a/b quartiles"] = 1.15, [q1, q3]
    assert _ratio_text(times, "a/b") == "1.150 [1.075-1.275]"
    order = []
    time_interleaved({"x": lambda: order.append("x"), "y": lambda: order.append("y")}, 3, 0, torch.device("cpu"))
    assert order == ["x", "y", "y", "x", "x", "y"]


def test_cpu_peak_memory_is_the_allocators_exact_peak_of_a_warm_call():
    import torch

    from temporalshift.bench import allocated_peak_mb, peak_memory_mb

    kept = []

    def two_transient_mib_then_keep_one():
        a = torch.ones(2**18)  # 1 MiB of float32
        b = a * 2  # 2 MiB held together: the peak
        del a, b
        kept.append(torch.ones(2**18))

    assert allocated_peak_mb(two_transient_mib_then_keep_one) == pytest.approx(2.0, abs=0.01)
    # the warm call first: equal calls give equal figures, which a resident-set peak does not
    assert peak_memory_mb(two_transient_mib_then_keep_one, torch.device("cpu")) == pytest.approx(2.0, abs=0.01)
    assert allocated_peak_mb(lambda: None) == 0.0

    def fails():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):  # the call's own error is not a missing profiler
        allocated_peak_mb(fails)


def test_bench_on_a_missing_gpu_says_so_in_one_line(capsys):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "--model", "tsm_mobilenetv2_1x1x8_k400", "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["bench", "--model", "tsm_mobilenetv2_1x1x8_k400", "--device", "tpu"]) == 2


def test_check_targets_marks_each_ratio_against_the_issue_bounds():
    from temporalshift.bench import check_targets, format_check

    report = {
        "inference": {"batch_1": {"tsm/tsn": 1.02, "tsm/tsn fast": 1.04}, "batch_8": {"tsm/tsn": 1.0}},
        "train": {"tsm/tsn": 1.06, "naive/tsm memory": 1.2},
    }
    rows = {what: (value, ok) for what, value, _, ok in check_targets(report)}
    assert rows == {
        "inference TSM/TSN, default form, batch 1": (1.02, True),
        "inference TSM/TSN, fast form, batch 1": (1.04, False),
        "inference TSM/TSN, default form, batch 8": (1.0, True),
        "training step TSM/TSN": (1.06, False),
        "naive-shift / ours training peak memory": (1.2, True),
    }
    text = format_check(check_targets(report))
    assert text.count("PASS") == 3 and text.count("FAIL") == 2


def test_bench_check_exits_1_exactly_when_a_target_is_missed(capsys):
    code = main(["bench", "--model", "tsm_mobilenetv2_1x1x8_k400", "--runs", "1", "--warmup", "0", "--batch", "1",
                 "--train-batch", "1", "--no-fast-paths", "--no-data", "--check", "--json"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert [t["what"] for t in report["targets"]] == [
        "inference TSM/TSN, default form, batch 1",
        "training step TSM/TSN",
        "naive-shift / ours training peak memory",
    ][: len(report["targets"])]
    assert code == (0 if all(t["met"] for t in report["targets"]) else 1)  # timings themselves are not asserted


def test_conv_peak_is_the_best_rate_over_resnet_shapes_with_the_multiply_adds_counted_per_frame(monkeypatch):
    import temporalshift.bench as bench

    peak = bench.conv_peak_gmacs("cpu", frames=1, runs=1)  # really runs each convolution
    assert list(peak["shapes"]) == [f"{i}->{o} {k}x{k} at {s}x{s}" for i, o, s, k in bench._PEAK_SHAPES]
    assert peak["gmacs_per_s"] == max(peak["shapes"].values()) > 0

    seen = []

    def fixed_time(fns, runs, warmup, device):
        out = fns["conv"]()  # the conv as measured: its output's shape gives the multiply-adds
        seen.append(out.shape)
        return {"conv": {"median_ms": 2.0}}

    monkeypatch.setattr(bench, "time_interleaved", fixed_time)
    peak = bench.conv_peak_gmacs("cpu", frames=2)
    for (cin, cout, side, k), rate, shape in zip(bench._PEAK_SHAPES, peak["shapes"].values(), seen, strict=True):
        assert tuple(shape) == (2, cout, side, side)
        assert rate == pytest.approx(2 * cout * side * side * cin * k * k / 2.0 / 1e6)  # per second, in G
