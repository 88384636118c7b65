"""Winograd F(4x4, 3x3) against oneDNN's direct convolution, in one run, interleaved.

    python benchmarks/winograd.py [--model tsm_r50_1x1x8_k400] [--batch 1] [--rounds 12]

Prints, per 3x3 shape of ResNet-50 (stride 1, 8 frames), the direct fused convolution's time, the
Winograd one's and their ratio; then the model's fast form with Winograd against the same fast form
without it (``temporalshift.ops.winograd.MIN_CHANNELS`` raised out of reach), with both outputs'
largest difference from the plain model. The ratios are medians of per-round ratios.
"""

from __future__ import annotations

import argparse

import torch

import temporalshift as ts
import temporalshift.ops.winograd as winograd
from temporalshift.bench import _inference_fn, paired_ratio, time_interleaved
from temporalshift.ops.fused import FusedConv2d

SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7)]  # (channels, side) of ResNet-50's stride-1 3x3s


def per_shape(frames: int, rounds: int) -> None:
    cpu = torch.device("cpu")
    print(f"3x3 conv, stride 1, {frames} frames:  direct ms  Winograd ms  Winograd/direct")
    for channels, side in SHAPES:
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).requires_grad_(False)
        direct = FusedConv2d(conv, "relu").to(memory_format=torch.channels_last)
        wino = winograd.WinogradConv2d(conv, "relu").to(memory_format=torch.channels_last)
        x = torch.randn(frames, channels, side, side).contiguous(memory_format=torch.channels_last)
        t = time_interleaved({"direct": _inference_fn(direct, x), "wino": _inference_fn(wino, x)}, rounds, 2, cpu)
        print(f"  {channels:3d} channels at {side}x{side}:        {t['direct']['median_ms']:7.2f}  "
              f"{t['wino']['median_ms']:11.2f}  {paired_ratio(t, 'wino', 'direct'):15.3f}")  # fmt: skip


def whole_model(name: str, batch: int, rounds: int) -> None:
    model = ts.create_model(name).eval()
    with_winograd = ts.optimize_for_inference(model)
    saved, winograd.MIN_CHANNELS = winograd.MIN_CHANNELS, 2**31
    try:
        without = ts.optimize_for_inference(model)
    finally:
        winograd.MIN_CHANNELS = saved
    count = sum(isinstance(m, winograd.WinogradConv2d) for m in with_winograd.modules())
    clip = torch.randn(batch, model.num_segments, 3, 224, 224)
    with torch.inference_mode():
        plain = model(clip)
        diffs = {k: (m(clip) - plain).abs().max().item() for k, m in (("direct", without), ("wino", with_winograd))}
    fns = {"direct": _inference_fn(without, clip), "wino": _inference_fn(with_winograd, clip)}
    t = time_interleaved(fns, rounds, 2, torch.device("cpu"))
    print(f"{name}, batch {batch}, fast form ({count} convs by Winograd): direct {t['direct']['median_ms']:.1f} ms, "
          f"Winograd {t['wino']['median_ms']:.1f} ms, Winograd/direct {paired_ratio(t, 'wino', 'direct'):.3f}; "
          f"largest difference from the plain model: direct {diffs['direct']:.1e}, Winograd {diffs['wino']:.1e} "
          f"(outputs up to {plain.abs().max().item():.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tsm_r50_1x1x8_k400")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--no-shapes", action="store_true", help="only the whole model")
    args = parser.parse_args()
    ts.tune_cpu_allocator()
    if not args.no_shapes:
        per_shape(8, args.rounds)
    whole_model(args.model, args.batch, args.rounds)


if __name__ == "__main__":
    main()
