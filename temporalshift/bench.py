"""``tsm bench``: what a TSM costs, measured against the same network without shifts (TSN) and a
plain torchvision model, in one run, with the same inputs (and TSM and TSN with the same weights).

Timings are interleaved (one run of every variant per round) so that machine noise hits all of
them alike; each figure is a median (and p90) over ``runs`` rounds after ``warmup`` rounds.
Peak memory is the tensor memory at the peak of one (warm) call beyond what was allocated before
it: on a CPU from the PyTorch profiler's allocation events (exact, so equal runs give equal
figures), on a GPU from ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

import temporalshift as ts
from temporalshift.atomic import atomic_path
from temporalshift.models.zoo import describe, get_spec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _with_weights_of(reference: torch.nn.Module, name: str, **overrides: Any) -> torch.nn.Module:
    """``create_model(name, **overrides)`` holding ``reference``'s weights: compared models then do
    the same arithmetic on the same numbers and differ only where the overrides say (the shift)."""
    model = ts.create_model(name, **overrides)
    model.load_state_dict(reference.state_dict())
    return model


def time_interleaved(fns: dict[str, Callable[[], Any]], runs: int, warmup: int, device: torch.device) -> dict:
    """Median and p90 (ms) of each function, run round-robin (in reverse order every other round,
    so that no variant always runs right after the same one). ``samples_ms`` keeps every round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(runs):
        for name in list(fns) if i % 2 == 0 else reversed(list(fns)):
            _sync(device)
            t0 = time.perf_counter()
            fns[name]()
            _sync(device)
            samples[name].append((time.perf_counter() - t0) * 1000)
    out = {}
    for name, xs in samples.items():
        ordered = sorted(xs)
        out[name] = {"median_ms": statistics.median(xs), "p90_ms": ordered[min(len(xs) - 1, int(0.9 * len(xs)))],
                     "samples_ms": xs}  # fmt: skip
    return out


def paired_ratio(times: dict, a: str, b: str) -> float:
    """Median over rounds of ``a``'s time / ``b``'s time in the same round: drift in the machine's
    speed (turbo, other load) cancels within a round, so this is steadier than a ratio of medians."""
    return statistics.median(x / y for x, y in zip(times[a]["samples_ms"], times[b]["samples_ms"], strict=True))


def paired_ratio_quartiles(times: dict, a: str, b: str) -> list[float]:
    """First and third quartile of the per-round ratios behind :func:`paired_ratio`: how far this
    machine's noise moves it (half of the rounds fall in between)."""
    ratios = [x / y for x, y in zip(times[a]["samples_ms"], times[b]["samples_ms"], strict=True)]
    if len(ratios) < 2:
        return [ratios[0], ratios[0]]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return [q1, q3]


def _rss_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def allocated_peak_mb(fn: Callable[[], Any]) -> float | None:
    """Peak of the tensor memory PyTorch's CPU allocator holds during one call of ``fn``, beyond
    what it held when the call began (MB), read from the profiler's allocation events.

    Exact and repeatable (unlike the resident-set peak, which moves with the allocator's reuse of
    freed pages), so two models can be told apart by a few MB. None where the profiler's event tree
    (a private API) is not available.
    """
    try:
        from torch._C._profiler import _EventType
    except ImportError:
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()  # an error of fn's own is the caller's to see, not a reason to measure another way
    try:
        events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            event = stack.pop()
            if event.tag == _EventType.Allocation:
                fields = event.extra_fields
                events.append((event.start_time_ns, fields.total_allocated, fields.alloc_size))
            stack.extend(event.children)
    except AttributeError:
        return None
    if not events:
        return 0.0
    events.sort()
    before = events[0][1] - events[0][2]  # what was held just before the call's first allocation
    return max(max(total for _, total, _ in events) - before, 0) / 2**20


def _resident_peak_mb(fn: Callable[[], Any]) -> float | None:
    """Growth of the process's peak resident set during one call (Linux), the fallback measure."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    except OSError:
        return None
    before = _rss_kb("VmRSS:")
    fn()
    peak = _rss_kb("VmHWM:")
    return None if before is None or peak is None else max(peak - before, 0) / 1024


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Extra memory at the peak of one call of ``fn`` (MB), beyond what was in use before it.

    ``fn`` runs once first, so that one-time allocations (an optimizer's momentum buffers, cached
    kernels) are not counted. On a GPU: the caching allocator's peak. On a CPU: the allocator's
    exact peak (:func:`allocated_peak_mb`), else the growth of the peak resident set; call it in a
    fresh process (see :func:`peak_memory_fresh`), so that other models' memory is not in the way.
    """
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    exact = allocated_peak_mb(fn)
    return exact if exact is not None else _resident_peak_mb(fn)


def peak_memory_fresh(name: str, variant: str, batch: int, train: bool, device: str) -> float | None:
    """:func:`peak_memory_mb` of one inference call or training step, in a new Python process."""
    call = f"_child_peak({name!r}, {variant!r}, {batch}, {train}, {device!r})"
    return _run_child(f"import json; from temporalshift.bench import _child_peak; print(json.dumps({call}))")


def _run_child(code: str) -> Any:
    """Run ``code`` (which prints JSON last) in a fresh Python with this process's thread count."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child_latency(name: str, batch: int, runs: int, tuned: bool) -> float:
    from temporalshift.performance import tune_cpu_allocator

    if tuned:
        tune_cpu_allocator()
    fn = _inference_fn(*_child_model_and_clip(name, "tsm", batch, False, torch.device("cpu")))
    return time_interleaved({"m": fn}, runs, 2, torch.device("cpu"))["m"]["median_ms"]


def allocator_report(name: str, batches: tuple[int, ...], runs: int) -> dict[str, dict[str, float | None]]:
    """Median latency of the default model in fresh processes with glibc's default malloc and with
    :func:`~temporalshift.performance.tune_cpu_allocator` (which the ``tsm`` commands apply)."""
    out = {}
    for batch in batches:
        row: dict[str, float | None] = {}
        for key, tuned in (("glibc_default_ms", False), ("tuned_ms", True)):
            call = f"bench._child_latency({name!r}, {batch}, {runs}, {tuned})"
            row[key] = _run_child(f"import json; import temporalshift.bench as bench; print(json.dumps({call}))")
        row["speedup"] = _ratio(row["glibc_default_ms"], row["tuned_ms"])
        out[f"batch_{batch}"] = row
    return out


def _build_variant(name: str, variant: str, train: bool) -> nn.Module:
    spec = get_spec(name)
    if variant == "torchvision":
        model = TorchvisionVideo(spec.backbone, spec.num_classes)
    elif variant == "tsm_naive_shift":
        model = ts.create_model(name)
    else:
        model = ts.create_model(name, **({"shift_div": 0} if variant.startswith("tsn") else {}))
    if variant.endswith("_fast"):
        from temporalshift.performance import optimize_for_inference

        return optimize_for_inference(model)
    return model.train(train)


def _child_model_and_clip(
    name: str, variant: str, batch: int, train: bool, dev: torch.device
) -> tuple[nn.Module, torch.Tensor]:
    """What a fresh benchmark process measures: one variant and a random batch of clips."""
    spec = get_spec(name)
    torch.manual_seed(0)
    model = _build_variant(name, variant, train).to(dev)
    return model, torch.randn(batch, spec.num_segments, 3, spec.input_size, spec.input_size, device=dev)


def _child_peak(name: str, variant: str, batch: int, train: bool, device: str) -> float | None:
    dev = torch.device(device)
    model, clip = _child_model_and_clip(name, variant, batch, train, dev)
    if train:
        fn = _train_fn(model, clip, torch.zeros(batch, dtype=torch.long, device=dev), variant == "tsm_naive_shift")
    else:
        fn = _inference_fn(model, clip)
    return peak_memory_mb(fn, dev)


class TorchvisionVideo(nn.Module):
    """A plain torchvision classifier applied to every frame, scores averaged: the no-TSM floor."""

    def __init__(self, backbone: str, num_classes: int) -> None:
        super().__init__()
        import torchvision

        name = "mobilenet_v2" if backbone == "mobilenetv2" else backbone
        self.net = getattr(torchvision.models, name)(num_classes=num_classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        scores = self.net(clip.flatten(0, 1))
        return scores.view(clip.shape[0], -1, scores.shape[-1]).mean(1)


def _inference_fn(model: nn.Module, clip: torch.Tensor, autocast: str | None = None) -> Callable[[], Any]:
    device_type = clip.device.type
    ctx = torch.autocast(device_type, dtype=torch.bfloat16 if autocast == "bf16" else torch.float16) if autocast \
        else contextlib.nullcontext()  # fmt: skip

    def run():
        with torch.inference_mode(), ctx:
            return model(clip)

    return run


# ResNet-50's convolution shapes (in, out, side, kernel) for an 8-frame clip: dense enough to
# show what this machine's fp32 convolutions can do at best
_PEAK_SHAPES = ((64, 64, 56, 3), (128, 128, 28, 3), (256, 256, 14, 3), (512, 512, 7, 3),
                (256, 64, 56, 1), (512, 128, 28, 1), (1024, 256, 14, 1))  # fmt: skip


def _peak_conv(shape: tuple[int, int, int, int], device: torch.device, frames: int) -> tuple[Callable[[], Any], int]:
    """One of :data:`_PEAK_SHAPES` ready to time, the fastest way the fast form knows
    (channels-last, inference mode, oneDNN's packed weights on a CPU): the call and its multiply-adds."""
    from temporalshift.ops.fused import FusedConv2d

    cin, cout, side, k = shape
    conv = FusedConv2d(nn.Conv2d(cin, cout, k, padding=k // 2)).to(device).to(memory_format=torch.channels_last)
    x = torch.randn(frames, cin, side, side, device=device).contiguous(memory_format=torch.channels_last)
    return _inference_fn(conv, x), frames * cout * side * side * cin * k * k


def conv_peak_gmacs(device: str | torch.device = "cpu", frames: int = 8, runs: int = 9) -> dict[str, Any]:
    """This machine's best fp32 convolution rate, in multiply-adds per second (FLOPs as the zoo
    counts them), over ResNet-50's shapes on ``frames`` frames, by oneDNN's direct algorithm.

    A model's rate against it says how much a direct-convolution fp32 path could still gain: a
    network at 90% of it can be made at most 1.1x faster that way. Rates count the direct
    convolution's multiply-adds; Winograd (the fast form's wide 3x3 convs) does fewer, so a model
    using it can come closer to, or pass, 100%. ``best`` is the shape to
    time beside a model (:func:`conv_peak_probe`), in the same rounds, so that noise cancels.
    """
    dev = torch.device(device)
    rates: dict[tuple[int, int, int, int], float] = {}
    for shape in _PEAK_SHAPES:
        fn, macs = _peak_conv(shape, dev, frames)
        rates[shape] = macs / time_interleaved({"conv": fn}, runs, 1, dev)["conv"]["median_ms"] / 1e6
    best = max(rates, key=rates.__getitem__)
    shapes = {f"{cin}->{cout} {k}x{k} at {side}x{side}": rate for (cin, cout, side, k), rate in rates.items()}
    return {"gmacs_per_s": rates[best], "shapes": shapes, "best": list(best), "frames": frames}


def conv_peak_probe(device: torch.device, frames: int) -> tuple[dict[str, Any], Callable[[], Any], int]:
    """:func:`conv_peak_gmacs`'s report, and its best convolution ready to time beside a model:
    the call and its multiply-adds."""
    peak = conv_peak_gmacs(device, frames)
    return (peak, *_peak_conv(tuple(peak["best"]), device, frames))  # type: ignore[arg-type]


def _train_fn(
    model: nn.Module, clip: torch.Tensor, labels: torch.Tensor, naive_shift: bool = False
) -> Callable[[], Any]:
    import temporalshift.ops.shift as shift_ops

    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def run():
        shift_ops.SAVE_SHIFT_MEMORY = not naive_shift  # the naive version keeps a shifted copy per block
        try:
            loss = nn.functional.cross_entropy(model(clip), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            shift_ops.SAVE_SHIFT_MEMORY = True

    return run


def run_bench(
    name: str,
    device: str = "cpu",
    batches: tuple[int, ...] = (1, 8),
    runs: int = 20,
    warmup: int = 3,
    train_batch: int = 2,
    fast_paths: bool = True,
    compile: bool = False,
    online: bool = True,
    data: bool = True,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """All the figures for one zoo model; see the module docstring."""
    dev = torch.device(device)
    spec = get_spec(name)
    info = describe(name)
    size, t = spec.input_size, spec.num_segments
    torch.manual_seed(0)
    tsm = ts.create_model(name)
    variants = {"tsm": tsm.eval().to(dev), "tsn": _with_weights_of(tsm, name, shift_div=0).eval().to(dev)}
    if spec.backbone.startswith("resnet") or spec.backbone == "mobilenetv2":
        variants["torchvision"] = TorchvisionVideo(spec.backbone, spec.num_classes).eval().to(dev)
    if fast_paths:  # the form tsm predict runs (optimize_for_inference), with and without shifts
        from temporalshift.performance import optimize_for_inference

        variants["tsm_fast"] = optimize_for_inference(variants["tsm"])
        variants["tsn_fast"] = optimize_for_inference(variants["tsn"])
    report: dict[str, Any] = {
        "model": name, "device": str(dev), "threads": torch.get_num_threads(), "input": [t, 3, size, size],
        "params": info["params"], "flops": info["flops"], "runs": runs, "warmup": warmup, "inference": {},
    }  # fmt: skip
    progress("this machine's best fp32 convolution rate (ResNet-50's shapes)")
    report["conv_peak"], probe, probe_macs = conv_peak_probe(dev, t)
    for batch in batches:
        progress(f"inference, batch {batch}: {', '.join(variants)}")
        clip = torch.randn(batch, t, 3, size, size, device=dev)
        fns = {k: _inference_fn(m, clip) for k, m in variants.items()}
        times = time_interleaved({**fns, "conv_peak": probe}, runs, warmup, dev)
        peak_ms = times.pop("conv_peak")["samples_ms"]
        for k in times:
            times[k]["videos_per_s"] = batch * 1000 / times[k]["median_ms"]
            # the backbone's multiply-adds per second (TSN and torchvision's are TSM's: the shift has none),
            # and that against the peak convolution timed in the same rounds
            times[k]["gmacs_per_s"] = batch * info["flops"] / times[k]["median_ms"] / 1e6
            rounds = zip(times[k]["samples_ms"], peak_ms, strict=True)
            times[k]["of_conv_peak"] = statistics.median(batch * info["flops"] * p / probe_macs / m for m, p in rounds)
            times[k]["peak_memory_mb"] = peak_memory_fresh(name, k, batch, False, device)
        times["conv_peak_gmacs_per_s"] = probe_macs / statistics.median(peak_ms) / 1e6
        times["conv_peak_samples_ms"] = peak_ms
        times["tsm/tsn"] = paired_ratio(times, "tsm", "tsn")
        times["tsm/tsn quartiles"] = paired_ratio_quartiles(times, "tsm", "tsn")
        if "tsm_fast" in times:
            times["tsm/tsn fast"] = paired_ratio(times, "tsm_fast", "tsn_fast")
            times["tsm/tsn fast quartiles"] = paired_ratio_quartiles(times, "tsm_fast", "tsn_fast")
        if "torchvision" in times:
            times["tsm/torchvision"] = paired_ratio(times, "tsm", "torchvision")
        report["inference"][f"batch_{batch}"] = times
    if train_batch:
        progress(f"training step, batch {train_batch}: tsm, tsm with the naive shift, tsn")
        clip = torch.randn(train_batch, t, 3, size, size, device=dev)
        labels = torch.randint(0, spec.num_classes, (train_batch,), device=dev)
        tsm = ts.create_model(name)
        fns = {
            "tsm": _train_fn(tsm.train().to(dev), clip, labels),
            "tsm_naive_shift": _train_fn(_with_weights_of(tsm, name).train().to(dev), clip, labels, naive_shift=True),
            "tsn": _train_fn(_with_weights_of(tsm, name, shift_div=0).train().to(dev), clip, labels),
        }
        times = time_interleaved(fns, max(runs // 2, 5), 2, dev)
        for k in times:
            times[k]["peak_memory_mb"] = peak_memory_fresh(name, k, train_batch, True, device)
        times["tsm/tsn"] = paired_ratio(times, "tsm", "tsn")
        times["tsm/tsn quartiles"] = paired_ratio_quartiles(times, "tsm", "tsn")
        times["naive/tsm memory"] = _ratio(times["tsm_naive_shift"]["peak_memory_mb"], times["tsm"]["peak_memory_mb"])
        times["tsm/tsn memory"] = _ratio(times["tsm"]["peak_memory_mb"], times["tsn"]["peak_memory_mb"])
        report["train"] = times
    if train_batch and data:
        progress("data pipeline (10 s 320x240 H.264 video), workers 0/1/2")
        pipeline = data_pipeline_report(size, t, train_batch)
        model_rate = train_batch * 1000 / report["train"]["tsm"]["median_ms"]
        best = max(pipeline.values())
        report["data"] = {"clips_per_s": pipeline, "model_train_clips_per_s": model_rate,
                          "bottleneck": "data" if best < model_rate else "model"}  # fmt: skip
    if fast_paths:
        progress("fast paths, batch 1")
        report["fast_paths"] = _fast_paths(variants["tsm"], t, size, dev, runs, warmup, compile)
    if fast_paths and dev.type == "cpu":
        progress("glibc's malloc against tune_cpu_allocator (fresh processes, default model)")
        report["allocator"] = allocator_report(name, (min(batches), max(batches)) if len(batches) > 1 else batches,
                                               max(runs // 4, 3))  # fmt: skip
    if online and spec.backbone == "mobilenetv2":
        progress("online MobileNetV2, one frame")
        online_model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400").to(dev)
        frame = torch.randn(3, size, size, device=dev)
        steps = {"torch": ts.OnlineRecognizer(online_model, engine="torch").step}
        if dev.type == "cpu":
            with contextlib.suppress(ImportError, ValueError):
                steps["onnxruntime"] = ts.OnlineRecognizer(online_model, engine="onnxruntime", spin=False).step
        times = time_interleaved({k: partial(fn, frame) for k, fn in steps.items()}, max(runs, 30), warmup, dev)
        report["online"] = times
    return report


def make_bench_video(path: str | Path, seconds: int = 10, gop: int | None = 30, fps: int = 30) -> Path:
    """A 320x240 H.264 video with real motion (so inter frames carry work), made once."""
    import numpy as np

    from temporalshift.data.encode import write_video

    path = Path(path)
    if not path.exists():
        base = np.random.default_rng(0).integers(0, 255, size=(240, 640, 3), dtype=np.uint8)
        frames = (np.roll(base, -3 * i, axis=1)[:, :320] for i in range(seconds * fps))
        write_video(path, frames, fps=fps, gop=gop, crf=23)
    return path


def data_pipeline_report(size: int, segments: int, batch: int, workers: tuple[int, ...] = (0, 1, 2),
                         batches: int = 8) -> dict[str, float]:  # fmt: skip
    """Training clips/s of the full data pipeline (decode + multi-scale crop + flip + normalize)."""
    from torch.utils.data import DataLoader

    from temporalshift.data.datasets import VideoDataset, VideoRecord
    from temporalshift.data.sampling import SamplingSpec
    from temporalshift.data.transforms import TrainTransform

    video = make_bench_video(Path(tempfile.gettempdir()) / "tsm-bench-10s-gop30.mp4")
    records = [VideoRecord(str(video), 0)] * (batch * batches)
    dataset = VideoDataset(records, SamplingSpec(num_segments=segments), TrainTransform(size=size))
    out = {}
    for n in workers:
        loader = DataLoader(dataset, batch_size=batch, num_workers=n, shuffle=True)
        t0 = time.perf_counter()
        for _ in loader:
            pass
        out[f"workers_{n}"] = len(records) / (time.perf_counter() - t0)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _fast_paths(model: nn.Module, t: int, size: int, dev: torch.device, runs: int, warmup: int, compile: bool) -> dict:
    from temporalshift.performance import optimize_for_inference, to_channels_last

    clip = torch.randn(1, t, 3, size, size, device=dev)
    fns: dict[str, Callable[[], Any]] = {"default": _inference_fn(model, clip)}
    fns["bn_folding"] = _inference_fn(optimize_for_inference(model, channels_last=False), clip)
    fns["channels_last"] = _inference_fn(to_channels_last(copy.deepcopy(model)), clip)
    fns["optimize_for_inference"] = _inference_fn(optimize_for_inference(model), clip)
    fns["bf16_autocast"] = _inference_fn(model, clip, "bf16")
    if dev.type == "cuda":
        fns["fp16_autocast"] = _inference_fn(model, clip, "fp16")

    def no_grad_only():
        with torch.no_grad():
            return model(clip)

    fns["no_grad_instead_of_inference_mode"] = no_grad_only
    if compile:
        compiled = torch.compile(optimize_for_inference(model))
        fns["torch_compile"] = _inference_fn(compiled, clip)
    if dev.type == "cpu":
        with contextlib.suppress(ImportError, ValueError):
            from temporalshift.export import export_onnx, load_onnx

            path = Path(tempfile.mkdtemp()) / "bench.onnx"
            export_onnx(model, path, check=False)
            session, _ = load_onnx(path, spin=False)  # spinning threads would slow the torch runs beside it
            feed = {"clip": clip.cpu().numpy()}
            fns["onnxruntime"] = lambda: session.run(None, feed)
    times = time_interleaved(fns, runs, warmup, dev)
    base = times["default"]["median_ms"]
    for k in times:
        times[k]["speedup"] = base / times[k]["median_ms"]
    return times


# The targets of "make the shift free" (issue 7): TSM/TSN time in inference and training, and the
# in-place shift's training memory against the naive copying shift.
TARGETS = {"inference TSM/TSN": 1.03, "training TSM/TSN": 1.05, "naive-shift/ours training memory": 1.0}


def check_targets(r: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    """Each target the report has figures for: (what, measured, the bound as text, met?)."""
    rows: list[tuple[str, float, str, bool]] = []
    for key, times in r.get("inference", {}).items():
        batch = key.removeprefix("batch_")
        for ratio, form in (("tsm/tsn", "default form"), ("tsm/tsn fast", "fast form")):
            if ratio in times:
                bound = TARGETS["inference TSM/TSN"]
                rows.append((f"inference TSM/TSN, {form}, batch {batch}", times[ratio], f"<= {bound}",
                             times[ratio] <= bound))  # fmt: skip
    train = r.get("train")
    if train:
        bound = TARGETS["training TSM/TSN"]
        rows.append(("training step TSM/TSN", train["tsm/tsn"], f"<= {bound}", train["tsm/tsn"] <= bound))
        memory = train.get("naive/tsm memory")
        if memory is not None:
            bound = TARGETS["naive-shift/ours training memory"]
            rows.append(("naive-shift / ours training peak memory", memory, f"> {bound}", memory > bound))
    return rows


def format_check(rows: list[tuple[str, float, str, bool]]) -> str:
    lines = ["targets (issue 7: the shift is free):"]
    lines += [
        f"  {'PASS' if ok else 'FAIL'}  {what:44s} {value:.3f}  (target {bound})" for what, value, bound, ok in rows
    ]
    return "\n".join(lines)


def _ratio_text(times: dict[str, Any], key: str) -> str:
    """``1.027 [1.004-1.049]``: the paired ratio and, where recorded, its rounds' quartiles."""
    quartiles = times.get(f"{key} quartiles")
    return f"{times[key]:.3f}" + (f" [{quartiles[0]:.3f}-{quartiles[1]:.3f}]" if quartiles else "")


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['model']} on {r['device']} ({r['threads']} threads), input {r['input']}, "
             f"{r['params']:,} params, {r['flops'] / 1e9:.2f} GFLOPs/clip (backbone)"]  # fmt: skip
    if "conv_peak" in r:
        best = max(r["conv_peak"]["shapes"], key=r["conv_peak"]["shapes"].get)
        lines.append(f"this machine's best fp32 convolution: {r['conv_peak']['gmacs_per_s']:.1f} GMAC/s ({best}, "
                     f"{r['conv_peak']['frames']} frames); 'of peak': a backbone's multiply-adds per second against "
                     "it, timed in the same rounds")  # fmt: skip
    for key, times in r["inference"].items():
        lines.append(f"\ninference, {key.replace('_', ' ')}:   median    p90   videos/s   peak MB   GMAC/s  of peak")
        for k in ("tsm", "tsn", "torchvision", "tsm_fast", "tsn_fast"):
            if k in times:
                v = times[k]
                mem = f"{v['peak_memory_mb']:8.0f}" if v["peak_memory_mb"] is not None else "       -"
                lines.append(f"  {k:<20} {v['median_ms']:7.1f} {v['p90_ms']:6.1f}   {v['videos_per_s']:8.2f}  {mem}"
                             f"  {v['gmacs_per_s']:7.1f}  {v['of_conv_peak']:6.0%}")  # fmt: skip
        ratio = f"  TSM/TSN time {_ratio_text(times, 'tsm/tsn')}"
        if "tsm/torchvision" in times:
            ratio += f"   TSM/torchvision {times['tsm/torchvision']:.3f}"
        if "tsm/tsn fast" in times:
            ratio += f"   fast form TSM/TSN {_ratio_text(times, 'tsm/tsn fast')}"
        lines.append(ratio)
    if "train" in r:
        tr = r["train"]
        lines.append("\ntraining step (forward + backward + SGD):   median ms   peak MB")
        for k in ("tsm", "tsm_naive_shift", "tsn"):
            mem = f"{tr[k]['peak_memory_mb']:.1f}" if tr[k]["peak_memory_mb"] is not None else "-"
            lines.append(f"  {k:<20} {tr[k]['median_ms']:10.1f}   {mem:>7}")
        lines.append(f"  TSM/TSN step time {_ratio_text(tr, 'tsm/tsn')}")
        pairs = (("naive/tsm memory", "naive-shift/TSM"), ("tsm/tsn memory", "TSM/TSN"))
        memory = [f"{what} {tr[key]:.4f}" for key, what in pairs if tr.get(key)]
        if memory:
            lines.append(f"  peak memory: {', '.join(memory)}")
    if "data" in r:
        d = r["data"]
        rates = ", ".join(f"{k.replace('_', ' ')}: {v:.1f}" for k, v in d["clips_per_s"].items())
        lines.append(f"\ndata pipeline clips/s ({rates}) vs model training {d['model_train_clips_per_s']:.1f} "
                     f"clips/s: the bottleneck is the {d['bottleneck']}")  # fmt: skip
    if "fast_paths" in r:
        lines.append("\nfast paths, batch 1:            median ms   speed-up vs default")
        for k, v in r["fast_paths"].items():
            lines.append(f"  {k:<34} {v['median_ms']:8.1f}   {v['speedup']:.2f}x")
    if "allocator" in r:
        lines.append("\nmalloc, default model (fresh processes):   glibc default   tune_cpu_allocator   speed-up")
        for key, v in r["allocator"].items():
            if v["speedup"] is not None:
                lines.append(f"  {key.replace('_', ' '):<40} {v['glibc_default_ms']:8.1f} ms {v['tuned_ms']:12.1f} ms"
                             f"   {v['speedup']:.2f}x")  # fmt: skip
    if "online" in r:
        lines.append(f"\nonline MobileNetV2, one {r['input'][2]}x{r['input'][3]} frame:")
        for k, v in r["online"].items():
            lines.append(f"  {k:<20} median {v['median_ms']:.1f} ms, p90 {v['p90_ms']:.1f} ms")
    return "\n".join(lines)


def plot_report(r: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(r["inference"])
    fig, grid = plt.subplots(1, len(keys) + ("fast_paths" in r), figsize=(5 * (len(keys) + 1), 4), squeeze=False)
    axes = list(grid[0])  # a list even for one panel
    for ax, key in zip(axes, keys, strict=False):
        names = [k for k in ("tsm", "tsn", "torchvision", "tsm_fast", "tsn_fast") if k in r["inference"][key]]
        ax.bar(names, [r["inference"][key][k]["median_ms"] for k in names], color=[f"C{i}" for i in range(len(names))])
        ax.set(title=f"inference, {key.replace('_', ' ')}", ylabel="median ms")
    if "fast_paths" in r:
        names = list(r["fast_paths"])
        axes[-1].barh(names, [r["fast_paths"][k]["speedup"] for k in names])
        axes[-1].set(title="speed-up vs default (batch 1)", xlabel="x")
    fig.suptitle(f"{r['model']} on {r['device']}")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return Path(path)
