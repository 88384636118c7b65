"""Ours against the authors' code (mit-han-lab/temporal-shift-module), side by side on one machine.

Their code is not ours to ship: clone it yourself and point ``--authors-repo`` at the clone.

    git clone https://github.com/mit-han-lab/temporal-shift-module /tmp/tsm-authors
    python benchmarks/compare_authors.py --authors-repo /tmp/tsm-authors

For TSM-ResNet-50 and TSM-MobileNetV2 (8 frames, 224x224, random weights with non-trivial BN
statistics) it builds their model, saves its weights in their checkpoint layout, loads them into
ours with ``create_model(..., checkpoint=...)`` and times, interleaved on the same clip:

* inference: their ``model.eval()`` under ``torch.no_grad`` vs ``tsm predict``'s default path
  (:class:`temporalshift.predict.Predictor`: the :func:`optimize_for_inference` form), with the
  largest output difference;
* their TSM/TSN time ratio next to ours (each with its own shift-free twin);
* both backbones' multiply-adds per second against this machine's best fp32 convolution rate
  (:func:`temporalshift.bench.conv_peak_probe`): the most any fp32 path could gain over theirs;
* a training step (forward, backward, SGD) on two clips, TSM/TSN for both codes;
* their online MobileNetV2 (``online_demo``, PyTorch) vs our :class:`OnlineRecognizer`, per frame.

Both codes run in one process with :func:`temporalshift.tune_cpu_allocator` applied, as in every
``tsm`` command (``--default-malloc`` leaves glibc's defaults). Only runtime shims are applied to
their code (torchvision's keyword-only ``weights``, one missing attribute), never edits to their files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import temporalshift as ts
from temporalshift.bench import _train_fn, conv_peak_probe, time_interleaved
from temporalshift.models.zoo import describe
from temporalshift.ops.winograd import WinogradConv2d
from temporalshift.predict import Predictor


def _median_ms(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Medians of ``tsm bench``'s interleaved timing (alternating order every other round)."""
    return {k: v["median_ms"] for k, v in time_interleaved(fns, rounds, warmup, torch.device("cpu")).items()}


def _import_authors(repo: Path):
    import torchvision

    sys.path.insert(0, str(repo))
    for name in ("resnet50", "resnet18", "resnet101"):  # they pass `pretrained` positionally
        original = getattr(torchvision.models, name)
        setattr(torchvision.models, name, lambda *args, _f=original, **kw: _f(**kw))
    from ops.models import TSN  # type: ignore[import-not-found]

    TSN.print_spec = False  # read before their __init__ sets it, on the MobileNetV2 path
    return TSN


def _their_model(TSN, base: str, shift: bool) -> nn.Module:
    model = TSN(400, 8, "RGB", base_model=base, is_shift=shift, shift_div=8, shift_place="blockres",
                pretrain=None, print_spec=False, dropout=0.5, partial_bn=False)  # fmt: skip
    for m in model.modules():  # non-trivial statistics, so that BN folding is really exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    if base == "mobilenetv2":  # their N(0, 0.001) classifier gives MobileNetV2 outputs of ~0.01: too small to compare
        nn.init.normal_(model.new_fc.weight, std=0.05)
    return model


def _twin_without_shifts(name: str, model: nn.Module) -> nn.Module:
    """The same weights with the shifts off (TSN): the state dicts have the same keys."""
    twin = ts.create_model(name, shift_div=0)
    twin.load_state_dict(model.state_dict())
    return twin


def compare_offline(TSN, base: str, name: str, rounds: int, workdir: Path, train: bool) -> None:
    torch.manual_seed(0)
    theirs = _their_model(TSN, base, shift=True)
    theirs.eval()  # their eval() returns None
    theirs_tsn = _their_model(TSN, base, shift=False)
    theirs_tsn.eval()
    path = workdir / f"{base}_authors_layout.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in theirs.state_dict().items()}}, path)
    loaded = ts.create_model(name, checkpoint=str(path))
    ours = Predictor(loaded).model
    ours_tsn = Predictor(_twin_without_shifts(name, loaded)).model
    clip = torch.randn(1, 8, 3, 224, 224)
    flat = clip.view(1, 24, 224, 224)
    with torch.no_grad():
        reference = theirs(flat)
    with torch.inference_mode():
        diff = (ours(clip) - reference).abs().max().item()

    def no_grad(model, x):
        def run():
            with torch.no_grad():
                model(x)

        return run

    def inference(model):
        def run():
            with torch.inference_mode():
                model(clip)

        return run

    _, probe, probe_macs = conv_peak_probe(torch.device("cpu"), clip.shape[1])  # timed in the same rounds
    t = _median_ms({"authors": no_grad(theirs, flat), "authors_tsn": no_grad(theirs_tsn, flat),
                    "ours": inference(ours), "ours_tsn": inference(ours_tsn), "conv_peak": probe}, rounds)  # fmt: skip
    print(f"{name} inference, one clip: authors {t['authors']:.1f} ms, ours {t['ours']:.1f} ms "
          f"-> ours {t['authors'] / t['ours']:.2f}x faster; max |output diff| {diff:.1e} "
          f"(outputs up to {reference.abs().max().item():.2f})")  # fmt: skip
    print(f"  TSM/TSN time: authors {t['authors'] / t['authors_tsn']:.3f}, ours {t['ours'] / t['ours_tsn']:.3f}")
    peak = probe_macs / t["conv_peak"] / 1e6
    flops = describe(name)["flops"]  # builds the model and counts: once
    rate = {k: flops / t[k] / 1e6 for k in ("authors", "ours")}  # backbone multiply-adds/s
    winograd = sum(isinstance(m, WinogradConv2d) for m in ours.modules())
    fewer = f" (ours runs {winograd} wide 3x3 convs by Winograd: fewer multiply-adds than counted)" if winograd else ""
    print(f"  backbone rate: authors {rate['authors']:.1f} GMAC/s ({rate['authors'] / peak:.0%} of this machine's "
          f"best fp32 convolution, {peak:.1f}), ours {rate['ours']:.1f} ({rate['ours'] / peak:.0%}): a direct-"
          f"convolution fp32 path can be at most {peak / rate['authors']:.2f}x faster than theirs here"
          + fewer)  # fmt: skip
    if not train:
        return
    clips, labels = torch.randn(2, 8, 3, 224, 224), torch.randint(0, 400, (2,))
    flat2 = clips.view(2, 24, 224, 224)
    models = {
        "authors": _their_model(TSN, base, True),
        "authors_tsn": _their_model(TSN, base, False),
        "ours": ts.create_model(name, checkpoint=str(path)),
        "ours_tsn": _twin_without_shifts(name, loaded),
    }
    steps = {}
    for k, m in models.items():
        m.train()
        steps[k] = _train_fn(m, flat2 if k.startswith("authors") else clips, labels)  # bench's SGD step
    t = _median_ms(steps, max(rounds // 3, 4), warmup=1)
    print(f"  training step, 2 clips: authors {t['authors']:.0f} ms (TSM/TSN {t['authors'] / t['authors_tsn']:.3f}), "
          f"ours {t['ours']:.0f} ms (TSM/TSN {t['ours'] / t['ours_tsn']:.3f})")  # fmt: skip


def compare_online(repo: Path, rounds: int) -> None:
    sys.path.insert(0, str(repo / "online_demo"))
    from mobilenet_v2_tsm import MobileNetV2  # type: ignore[import-not-found]

    theirs = MobileNetV2(n_class=400).eval()
    sizes = [(3, 56), (4, 28), (4, 28), (8, 14), (8, 14), (8, 14), (12, 14), (12, 14), (20, 7), (20, 7)]
    buffers = [torch.zeros(1, c, s, s) for c, s in sizes]
    frame = torch.rand(3, 224, 224)

    def their_step() -> None:
        nonlocal buffers
        with torch.no_grad():
            out = theirs(frame[None], *buffers)
        buffers = list(out[1:])

    model = ts.create_model("tsm_mobilenetv2_online_1x1x8_k400")
    ours = ts.OnlineRecognizer(model, engine="torch")
    fns = {"authors": their_step, "ours": lambda: ours.step(frame)}
    try:
        ours_ort = ts.OnlineRecognizer(model, engine="onnxruntime", spin=False)
        fns["ours_onnxruntime"] = lambda: ours_ort.step(frame)
    except (ImportError, ValueError):
        pass
    t = _median_ms(fns, max(rounds * 3, 30), warmup=5)
    line = f"online MobileNetV2, one frame: authors {t['authors']:.1f} ms, ours {t['ours']:.1f} ms"
    if "ours_onnxruntime" in t:
        line += f", ours with onnxruntime {t['ours_onnxruntime']:.1f} ms"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-repo", required=True, type=Path, help="a clone of mit-han-lab/temporal-shift-module")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-train", action="store_true", help="skip the training-step comparison")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    parser.add_argument("--default-malloc", action="store_true", help="do not apply tune_cpu_allocator")
    args = parser.parse_args()
    if not (args.authors_repo / "ops" / "models.py").exists():
        sys.exit(f"compare_authors: error: {args.authors_repo} is not a clone of mit-han-lab/temporal-shift-module")
    tuned = not args.default_malloc and ts.tune_cpu_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, tune_cpu_allocator: {tuned}")
    TSN = _import_authors(args.authors_repo)
    compare_offline(TSN, "resnet50", "tsm_r50_1x1x8_k400", args.rounds, args.workdir, not args.no_train)
    compare_offline(TSN, "mobilenetv2", "tsm_mobilenetv2_1x1x8_k400", args.rounds, args.workdir, not args.no_train)
    compare_online(args.authors_repo, args.rounds)


if __name__ == "__main__":
    main()
