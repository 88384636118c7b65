"""The ``tsm`` command: thin sub-commands over the library's public functions.

Errors a user can fix are one line on stderr with exit code 1 (runtime) or 2 (usage); a
traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalshift import __version__

H264_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")  # containers that take the annotated video's H.264
LABELS_HELP = "kinetics400 | sthv2 | jester | moving_digits | a label-map file (default: the model's)"


class UsageError(ValueError):
    """Bad arguments: reported like argparse's own errors, with exit code 2."""


def _at_least(*checks: tuple[str, float | None, int]) -> None:
    """Usage errors for numeric options below their least value; ``None`` (not given) passes."""
    for flag, value, least in checks:
        if value is not None and value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Plain aligned text table: ``columns`` is ``[(key, header), ...]``; numbers right-aligned."""
    cells = [[h for _, h in columns]] + [["-" if r.get(k) is None else str(r[k]) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    numeric = [all(_is_number(r.get(k)) for r in rows) for k, _ in columns]
    lines = []
    for j, row in enumerate(cells):
        parts = [c.rjust(w) if num and j else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    """Numbers, and numbers formatted with a unit ("2.74M"), are right-aligned."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return True
    return isinstance(value, str) and re.fullmatch(r"-?[\d.,]+[kMG%]?", value) is not None


def cmd_models(args: argparse.Namespace) -> int:
    """List the model zoo with parameters and FLOPs computed from each model."""
    from temporalshift.models.zoo import describe, list_models

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r} (try `tsm models` for the full list)")
    infos = [describe(n) for n in names]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    rows = [
        {
            **info,
            "params_m": f"{info['params'] / 1e6:.2f}M",
            "gflops": f"{info['flops'] / 1e9:.2f}G",
            "top1": None if info["top1"] is None else f"{info['top1']:.2f}",
        }
        for info in infos
    ]
    columns = [
        ("name", "model"),
        ("backbone", "backbone"),
        ("shift", "shift"),
        ("frames", "T"),
        ("num_classes", "classes"),
        ("params_m", "params"),
        ("gflops", "FLOPs"),
        ("top1", "top-1"),
        ("test_views", "test views"),
        ("protocol", "published protocol"),
    ]
    print(_table(rows, columns))
    print(
        "\nparams: whole model; FLOPs: backbone only, one clip of T frames at 224x224, "
        "1 multiply-add = 1 FLOP (mmaction2 1.x / fvcore convention)\n"
        "test views: what `tsm test` and `tsm predict` run per video, clips of T frames x crops "
        "(twice-sample doubles the clips); published protocol: mmaction2's words, its 'clips' are the T segments"
    )
    return 0


def cmd_prepare_annotations(args: argparse.Namespace) -> int:
    """Annotation lists and a label map from a dataset's official layout."""
    from temporalshift.data.layouts import read_layout, write_layout

    layout = read_layout(args.dataset, args.root, args.split)
    written = write_layout(layout, args.dataset, args.out or args.root)
    for split, rows in layout.splits.items():
        missing = layout.missing.get(split, 0)
        note = f" ({missing} listed videos not found, left out)" if missing else ""
        print(f"{split}: {len(rows)} videos -> {written[split]}{note}")
    print(f"{len(layout.classes)} classes -> {written['label_map']}")
    print(f"paths are relative to {args.root}: pass it as the dataset root")
    if layout.frame_template:
        print(f"frames are named {layout.frame_template}: set data.frame_template (tsm prepare check --template)")
    return 0


def _print_jobs(results: list, what: str) -> int:
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    failed = [r for r in results if r.status == "failed"]
    print(f"{what}: {done} done, {skipped} already there, {len(failed)} failed")
    for r in failed:
        print(f"  failed: {r.source}: {r.detail}", file=sys.stderr)
    return 1 if failed else 0


def _video_jobs(src_dir: str, out_dir: str, suffix: str, *extra) -> list[tuple]:
    """One job per video under ``src_dir``: (video, its place in the same tree under ``out_dir``, *extra).
    Two videos with one place (``clip.mp4``, ``clip.mkv``) are refused before any work."""
    from temporalshift.data.files import find_videos
    from temporalshift.data.prepare import check_outputs

    src, out = Path(src_dir), Path(out_dir)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise UsageError(f"write the output beside the source, not into it: {out} is inside {src}")
    videos = find_videos(src)
    if not videos:
        raise ValueError(f"no videos under {src}")
    jobs = [(v, out / v.relative_to(src).with_suffix(suffix), *extra) for v in videos]
    check_outputs([(job[0], job[1]) for job in jobs])
    return jobs


def cmd_prepare_frames(args: argparse.Namespace) -> int:
    """Extract the frames of every video under SRC into OUT/<relative path without suffix>/."""
    from temporalshift.data.prepare import check_frame_template, check_short_side, extract_frames, run_jobs

    check_short_side(args.short_side)
    check_frame_template(args.template)
    jobs = _video_jobs(args.src, args.out, "", args.short_side, args.template)
    return _print_jobs(run_jobs(extract_frames, jobs, args.workers, "extracting frames"), "frames")


def cmd_prepare_resize(args: argparse.Namespace) -> int:
    """Re-encode every video under SRC with its short side scaled, into OUT (same tree, .mp4)."""
    from temporalshift.data.prepare import check_short_side, resize_video, run_jobs

    check_short_side(args.short_side)
    jobs = _video_jobs(args.src, args.out, ".mp4", args.short_side)
    return _print_jobs(run_jobs(resize_video, jobs, args.workers, "resizing videos"), "resized")


def cmd_prepare_check(args: argparse.Namespace) -> int:
    """Scan an annotated dataset for videos that cannot be decoded (or are shorter than listed)."""
    from temporalshift.data.datasets import read_annotations
    from temporalshift.data.prepare import check_dataset, check_frame_template, write_check_report

    check_frame_template(args.template)
    records = read_annotations(args.annotations, args.root)
    report = args.report or f"{args.annotations}.check.json"
    checks = check_dataset(records, None, args.full, args.repair, args.workers, args.template)
    bad = [c for c in checks if c.problem]
    print(f"checked {len(checks)} videos: {len(checks) - len(bad)} good, {len(bad)} with problems")
    for c in bad:
        fixed = " (repaired; original kept as .broken)" if c.repaired else ""
        print(f"  {c.path}: {c.problem}{fixed}")
    try:  # after the findings are printed: a bad --report path must not hide them
        write_check_report(checks, report)
        print(f"report: {report}")
    except OSError as exc:
        print(f"tsm prepare check: error: the report could not be written to {report} ({exc})", file=sys.stderr)
        return 1
    return 1 if any(not c.repaired for c in bad) else 0


def cmd_prepare_digits(args: argparse.Namespace) -> int:
    """Generate the built-in moving-digits dataset."""
    from temporalshift.data.synthetic import MovingDigitsConfig, make_moving_digits

    config = MovingDigitsConfig(
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        test_per_class=args.test_per_class,
        seed=args.seed,
    )
    paths = make_moving_digits(args.out, config, progress=True)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Train TSM and TSN on the built-in moving digits and compare them."""
    from temporalshift.engine.demo import format_table, main

    results = main(args.out, args.quick, args.json, args.set)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print()
        print(format_table(results))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a recipe (a YAML path or a bundled name) on one process or under torchrun."""
    from temporalshift.engine.config import load_config
    from temporalshift.engine.distributed import is_main_process
    from temporalshift.engine.train import resume_config, train

    if args.resume:  # the run's own config: the command line may change only how it runs
        for flag, value in (("--work-dir", args.work_dir), ("--load-from", args.load_from)):
            if value:
                raise UsageError(f"{flag} is for a new run; --resume continues {args.resume} in place")
        cfg = resume_config(args.resume, args.config, list(args.set))
    else:
        cfg = load_config(args.config, args.set)
        # paths as given (no YAML parsing: 'exp #2' or 'a: b' are folder names, not a comment or a mapping)
        if args.load_from:
            cfg = replace(cfg, model=replace(cfg.model, load_from=args.load_from))
        if args.work_dir:
            cfg = replace(cfg, runtime=replace(cfg.runtime, work_dir=args.work_dir))
    result = train(cfg, resume=args.resume, auto_scale_lr=args.auto_scale_lr)
    if is_main_process():  # under torchrun, one line, not one per process
        best = f"{100 * result.best_top1:.2f}%" if result.best_top1 is not None else "-"
        print(f"done in {result.seconds:.0f} s: best val top-1 {best}; checkpoints and logs in {result.work_dir}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint with the recipe's (or the given) test protocol."""
    from temporalshift.engine.config import load_config
    from temporalshift.engine.distributed import is_main_process
    from temporalshift.engine.evaluate import check_dump_path, run_test

    _at_least(("--clips", args.clips, 1))
    if args.dump:
        try:
            check_dump_path(Path(args.dump))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    cfg = load_config(args.config, args.set)
    twice = {"on": True, "off": False}.get(args.twice_sample)
    result = run_test(cfg, args.checkpoint, clips=args.clips, crops=args.crops, twice=twice, dump=args.dump)
    if not is_main_process():  # under torchrun the main process prints the (gathered) result
        return 0
    summary = result.summary()
    if args.json:
        print(json.dumps({**summary, "per_class_accuracy": result.per_class_accuracy}, indent=2))
        return _dump_failed(result.dump_error)
    print(
        f"{summary['num_videos']} videos x {summary['views_per_video']} views: "
        f"top-1 {100 * result.top1:.2f}%  top-5 {100 * result.top5:.2f}%  "
        f"mean class accuracy {100 * result.mean_class_accuracy:.2f}%"
    )
    if result.skipped:
        print(f"{len(result.skipped)} unreadable video(s) left out:")
        for video, reason in list(result.skipped.items())[:10]:
            print(f"  {video}: {reason}")
    if args.dump and not result.dump_error:
        print(f"per-video scores: {args.dump}")
    return _dump_failed(result.dump_error)


def _dump_failed(error: str | None) -> int:
    if error:
        print(f"tsm test: error: {error}", file=sys.stderr)
    return 1 if error else 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Write any recognised checkpoint in our format (torch or safetensors)."""
    from temporalshift.models.convert import convert_checkpoint

    found, out = convert_checkpoint(args.src, args.dst, args.format)
    print(f"recognised {found.describe()}")
    for note in [*found.notes, *found.assumptions]:
        print(f"  note: {note}")
    print(f"wrote {out} ({len(found.state_dict)} tensors): temporalshift.load_checkpoint({str(out)!r})")
    return 0


def _load_model(args: argparse.Namespace):
    """--model NAME [--checkpoint P], or a checkpoint alone (rebuilt from the file)."""
    import temporalshift as ts

    if args.model:
        if not args.checkpoint:
            print(f"warning: no --checkpoint: {args.model} has random weights, so its outputs mean nothing "
                  "(give --checkpoint PATH: a run's best.pt or a published file)", file=sys.stderr)  # fmt: skip
        return ts.create_model(args.model, checkpoint=args.checkpoint)
    if args.checkpoint:
        return ts.load_checkpoint(args.checkpoint)
    raise UsageError("give --model NAME (and --checkpoint PATH), or --checkpoint PATH alone")


def _predictor(args: argparse.Namespace, **options: Any):
    """The Predictor of --onnx F, or of --model/--checkpoint (see _load_model), and a name for it."""
    from temporalshift.predict import Predictor

    if args.onnx and (args.checkpoint or args.model):
        raise UsageError("--onnx runs the exported file's own weights: drop --model/--checkpoint")
    if args.onnx:
        return Predictor(onnx=args.onnx, labels=args.labels, **options), Path(args.onnx).name
    model = _load_model(args)
    return Predictor(model, labels=args.labels, **options), getattr(model, "name", None)


def cmd_predict(args: argparse.Namespace) -> int:
    """Top-k actions for each video of a file, folder or glob."""
    from temporalshift.predict import annotate_video, expand_sources, predict_many

    _at_least(("--topk", args.topk, 1), ("--clips", args.clips, 1))
    paths = expand_sources(args.sources)
    if args.out_video and len(paths) != 1:
        raise UsageError("--out-video needs exactly one input video")
    if args.out_video and Path(args.out_video).resolve() == Path(paths[0]).resolve():
        raise UsageError("--out-video is the input video itself; name another file")
    if args.out_video and Path(args.out_video).suffix.lower() not in H264_SUFFIXES:
        raise UsageError(f"--out-video is written as H.264: name a {', '.join(H264_SUFFIXES)} file, "
                         f"not {Path(args.out_video).name}")  # fmt: skip
    predictor, _ = _predictor(args, clips=args.clips, crops=args.crops, fast=args.fast)
    failed = 0
    rows = []
    for pred in predict_many(predictor, paths, args.topk, workers=args.workers, progress=not args.json):
        if not pred.ok:
            failed += 1
            print(f"tsm predict: error: {pred.error}", file=sys.stderr)
            if args.json:  # one line per input, with its "error"
                print(pred.to_json(), flush=True)
            continue
        if args.json:
            print(pred.to_json(), flush=True)
        elif args.csv:
            rows.append(pred)
        else:
            print(f"\n{pred.source}")
            print(_table([{"rank": i + 1, "label": label, "prob": f"{100 * p:.1f}%"}
                          for i, (label, p) in enumerate(pred.topk(args.topk))],
                         [("rank", "#"), ("label", "class"), ("prob", "probability")]))  # fmt: skip
        if args.out_video:
            annotate_video(pred.source, args.out_video, pred)
            print(f"annotated video: {args.out_video}", file=sys.stderr if args.json or args.csv else sys.stdout)
    if args.csv:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["video", "rank", "label", "probability"])
        for pred in rows:
            for i, (label, p) in enumerate(pred.topk(args.topk)):
                writer.writerow([pred.source, i + 1, label, f"{p:.6f}"])
    if failed:
        print(f"tsm predict: {failed} of {len(paths)} video(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    """ONNX or TorchScript, checked against PyTorch."""
    from temporalshift.export import export_onnx, export_torchscript
    from temporalshift.online import export_online_onnx

    if args.online and args.format != "onnx":
        raise UsageError("--online exports ONNX only")
    if args.online and args.dynamic_batch:
        raise UsageError("--online already exports a step for any number of streams: drop --dynamic-batch")
    if args.checkpoint and Path(args.output).resolve() == Path(args.checkpoint).resolve():
        raise UsageError("-o is the checkpoint itself: the export would replace the weights; name another file")
    model = _load_model(args).eval()
    if args.reparameterize:
        model.reparameterize()
    if args.online:
        report = export_online_onnx(model, args.output, check=not args.no_check)
    elif args.format == "onnx":
        report = export_onnx(model, args.output, dynamic_batch=args.dynamic_batch, check=not args.no_check)
    else:
        report = export_torchscript(model, args.output, check=not args.no_check)
    print(report)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """An HTTP endpoint (POST /predict) and a web page over one loaded model, until Ctrl-C."""
    import signal

    from temporalshift.serve import PredictionServer

    _at_least(("--topk", args.topk, 1))
    if args.max_mb <= 0:
        raise UsageError(f"--max-mb must be positive, got {args.max_mb:g}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {args.port}")
    predictor, name = _predictor(args)
    server = PredictionServer(predictor, args.host, args.port, args.max_mb, args.topk, name, quiet=args.quiet)
    print(f"serving {server.model_name} at {server.url}  (POST a video to {server.url}predict; Ctrl-C stops)",
          flush=True)  # fmt: skip

    def stop(signum, frame) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM (docker stop, systemd) both stop it, even where SIGINT was ignored when the
    # process started (a background job of a script), which would leave it deaf to Ctrl-C
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    """Recognise a video file, camera or URL frame by frame with a uni-directional model."""
    from temporalshift.streaming import stream

    _at_least(("--window", args.window, 1), ("--max-frames", args.max_frames, 1))
    model = _load_model(args)
    events = stream(model, args.source, window=args.window, labels=args.labels, max_frames=args.max_frames,
                    engine=args.engine)  # fmt: skip
    for event in events:
        if event["frame"] == 0 and not args.json:
            print(f"engine: {event['engine']}", flush=True)
        if args.json:
            print(json.dumps(event), flush=True)
        else:
            print(f"frame {event['frame']:5d}  {event['label']:<32} {100 * event['score']:5.1f}%  "
                  f"{event['latency_ms']:6.1f} ms", flush=True)  # fmt: skip
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed and memory of a zoo model against TSN and plain torchvision, in one run."""
    import torch

    from temporalshift.bench import check_targets, format_check, format_report, plot_report, run_bench

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA GPU is visible on this machine (use --device cpu)")
    if args.device.split(":")[0] not in ("cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda[:N], got {args.device!r}")
    _at_least(("--runs", args.runs, 1), ("--warmup", args.warmup, 0), ("--train-batch", args.train_batch, 0),
              ("--threads", args.threads or 1, 1), ("--batch", min(args.batch), 1))  # fmt: skip
    plot_to = _plot_path(args.plot) if args.plot else None  # before the run: a bad path must not cost its results
    if args.threads:
        torch.set_num_threads(args.threads)
    say = (lambda msg: print(msg, file=sys.stderr)) if args.json else (lambda msg: print(f"... {msg}", flush=True))
    report = run_bench(args.model, args.device, tuple(args.batch), args.runs, args.warmup, args.train_batch,
                       fast_paths=not args.no_fast_paths, compile=args.compile, data=not args.no_data,
                       progress=say)  # fmt: skip
    plot_failed = False
    if plot_to is not None:
        try:
            report["plot"] = str(plot_report(report, plot_to))
        except (OSError, ValueError) as exc:  # the figures are printed all the same
            print(f"tsm bench: error: the plot could not be written to {plot_to}: {exc}", file=sys.stderr)
            plot_failed = True
    rows = check_targets(report) if args.check else []
    if args.check:
        report["targets"] = [{"what": w, "value": v, "target": b, "met": ok} for w, v, b, ok in rows]
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if args.check and not args.json:
        print(format_check(rows))
    return 0 if all(ok for *_, ok in rows) and not plot_failed else 1


def _plot_path(path: str) -> Path:
    """``--plot``'s file, its folder made now, so that the run's figures are never lost to a bad path."""
    from matplotlib.figure import Figure

    out = Path(path)
    kinds = Figure().canvas.get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in kinds:
        raise UsageError(f"--plot {path}: name a .png file (or .{', .'.join(sorted(kinds))})")
    if out.is_dir():
        raise UsageError(f"--plot {path} is a folder; name a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    existed = out.exists()
    try:
        with open(out, "ab"):  # can it be written at all (a read-only place, /proc...)?
            pass
    except OSError as exc:
        raise UsageError(f"--plot {path} cannot be written ({exc.strerror})") from None
    if not existed:
        out.unlink()
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsm", description="Video action recognition with the Temporal Shift Module.")
    parser.add_argument("--version", action="version", version=f"temporalshift {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("models", help="list the model zoo with params, FLOPs and published top-1")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'tsm_r50_*'")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="train TSM and TSN on built-in moving digits and compare (~3 min)")
    p.add_argument("--out", default="runs/demo", help="where runs and checkpoints go")
    p.add_argument("--quick", action="store_true", help="a smaller dataset and fewer epochs (~1 min)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (fractions 0..1)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override the demo config")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a recipe (YAML or bundled name); torchrun for many GPUs")
    p.add_argument("config", help="a YAML recipe or a bundled name, e.g. tsm_r50_1x1x8_k400")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. optim.lr=0.01 data.batch_size=8")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--auto-scale-lr", action="store_true", help="scale lr linearly to the total batch size")
    p.add_argument("--load-from", metavar="CKPT", help="fine-tune from a checkpoint (new classifier if needed)")
    p.add_argument("--work-dir", help="where checkpoints and logs go (default: runtime.work_dir)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="evaluate a checkpoint with the published test protocol")
    p.add_argument("config", help="the recipe the checkpoint was trained with")
    p.add_argument("checkpoint")
    p.add_argument("--clips", type=int, help="clips per video (default: the recipe's / zoo's)")
    p.add_argument("--crops", choices=["center", "three", "ten", "full"], help="crops per clip")
    p.add_argument("--twice-sample", choices=["on", "off"], help="add the segment-start clips")
    p.add_argument("--dump", help="write per-video scores to a .json or .pkl file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("predict", help="top-k actions for videos (file, folder or glob)")
    p.add_argument("sources", nargs="+", help="video files, folders or globs")
    p.add_argument("--model", help="zoo name (see `tsm models`)")
    p.add_argument("--checkpoint", help="weights (any known ecosystem); alone, the model is rebuilt from it")
    p.add_argument("--onnx", help="run an exported ONNX model with onnxruntime instead")
    p.add_argument("--labels", help=LABELS_HELP)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--clips", type=int, help="clips per video (default: the model's test protocol)")
    p.add_argument("--crops", choices=["center", "three", "ten", "full"])
    p.add_argument("--workers", type=int, default=1, help="decoding processes for many videos")
    p.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the optimised inference path (BN folding, fused convolutions, channels-last)",
    )
    p.add_argument("--out-video", help="write the video with its top predictions drawn on it")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per video")
    fmt.add_argument("--csv", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export to ONNX or TorchScript, checked against PyTorch")
    p.add_argument("--model", help="zoo name")
    p.add_argument("--checkpoint")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--dynamic-batch", action="store_true", help="ONNX: a free batch dimension")
    p.add_argument("--reparameterize", action="store_true", help="fuse MobileOne branches first")
    p.add_argument("--online", action="store_true", help="one online step, shift caches as inputs/outputs")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="an HTTP endpoint (POST /predict) and a web page over one model")
    p.add_argument("--model", help="zoo name (see `tsm models`)")
    p.add_argument("--checkpoint", help="weights (any known ecosystem); alone, the model is rebuilt from it")
    p.add_argument("--onnx", help="serve an exported ONNX model through onnxruntime instead")
    p.add_argument("--labels", help=LABELS_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--topk", type=int, default=5, help="classes per answer (a request may ask ?topk=N)")
    p.add_argument("--max-mb", type=float, default=200.0, help="largest upload accepted")
    p.add_argument("--quiet", action="store_true", help="no line per request on stderr")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("stream", help="frame-by-frame recognition of a file, camera index or URL")
    p.add_argument("source", help="a video file, a camera index (0) or an rtsp/http URL")
    p.add_argument("--model", help="a uni-directional zoo model, e.g. tsm_mobilenetv2_online_1x1x8_k400")
    p.add_argument("--checkpoint")
    p.add_argument("--labels", help=LABELS_HELP)
    p.add_argument("--window", type=int, default=8, help="frames averaged for the shown label")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument(
        "--engine",
        choices=["auto", "torch", "onnxruntime"],
        default="auto",
        help="onnxruntime runs the exported step, about 1.5x faster per frame on CPUs (tsm bench); auto (default) "
        "takes it when installed (pip install temporalshift[export])",
    )
    p.add_argument("--json", action="store_true", help="one JSON line per frame")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("bench", help="speed and memory vs TSN and torchvision (ratios in one run)")
    p.add_argument("--model", default="tsm_r50_1x1x8_k400")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="inference batch sizes")
    p.add_argument("--train-batch", type=int, default=2, help="clips per training step (0: skip)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--no-fast-paths", action="store_true")
    p.add_argument("--no-data", action="store_true", help="skip the data-pipeline throughput")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to start)")
    p.add_argument("--plot", help="write a PNG bar chart")
    p.add_argument(
        "--check",
        action="store_true",
        help="also check the shift's targets (TSM/TSN <= 1.03 inference, <= 1.05 training, less "
        "training memory than the naive shift); exit 1 if one is missed",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("convert", help="convert an authors'/mmaction2/PaddleVideo checkpoint to ours")
    p.add_argument("src", help="a checkpoint file (.pth, .pt, .pdparams, .safetensors) or URL")
    p.add_argument("dst", help="output file (.pt or .safetensors)")
    p.add_argument("--format", choices=["torch", "safetensors"], help="default: from the output's suffix")
    p.set_defaults(func=cmd_convert)

    _add_prepare(sub)
    return parser


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from temporalshift.data.layouts import LAYOUT_HELP, LAYOUTS

    prep = sub.add_parser("prepare", help="prepare datasets: annotations, frames, resizing, checks")
    steps = prep.add_subparsers(dest="step", metavar="STEP")
    steps.required = True

    p = steps.add_parser(
        "annotations",
        help="annotation lists + label map from an official layout",
        description="Lists and a label map from a dataset as its publishers ship it. Expected under ROOT:\n"
        + "\n".join(f"  {name}: {where}" for name, where in LAYOUT_HELP.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", choices=sorted(LAYOUTS))
    p.add_argument("root", help="the dataset's root folder, as its publishers ship it")
    p.add_argument("--out", help="where to write the lists (default: ROOT)")
    p.add_argument("--split", type=int, default=1, help="UCF-101 / HMDB-51 split (1-3)")
    p.set_defaults(func=cmd_prepare_annotations)

    p = steps.add_parser("frames", help="extract frames of every video under SRC (resumable)")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--short-side", type=int, default=None, help="resize frames to this short side")
    p.add_argument("--template", default="img_{:05d}.jpg")
    p.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    p.set_defaults(func=cmd_prepare_frames)

    p = steps.add_parser("resize", help="re-encode every video under SRC at a short side (resumable)")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--workers", type=int, default=0)
    p.set_defaults(func=cmd_prepare_resize)

    p = steps.add_parser("check", help="find videos that cannot be decoded; optionally repair them")
    p.add_argument("annotations", help="an annotation list (video or frame list)")
    p.add_argument("--root", help="folder the list's paths are relative to (default: the list's folder)")
    p.add_argument("--full", action="store_true", help="decode every frame, not just a few")
    p.add_argument("--repair", action="store_true", help="re-encode broken videos from their good frames")
    p.add_argument("--report", help="json report path (default: ANNOTATIONS.check.json)")
    p.add_argument("--template", default="img_{:05d}.jpg", help="frame file names in frame folders (sthv1: {:05d}.jpg)")
    p.add_argument("--workers", type=int, default=0)
    p.set_defaults(func=cmd_prepare_check)

    p = steps.add_parser("digits", help="generate the built-in moving-digits dataset")
    p.add_argument("out")
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--val-per-class", type=int, default=20)
    p.add_argument("--test-per-class", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_prepare_digits)


def _subcommand_parser(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.ArgumentParser:
    """The parser of the (sub)command that was run, for its own usage line."""
    words = list(sys.argv[1:] if argv is None else argv)
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        word = next((w for w in words if subs and w in subs[0].choices), None)
        if word is None:
            return parser
        parser = subs[0].choices[word]
        words = words[words.index(word) + 1 :]


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tsm``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    from temporalshift.performance import tune_cpu_allocator

    tune_cpu_allocator()  # activations reuse freed memory instead of page-faulting in every call
    name = " ".join(filter(None, (args.command, getattr(args, "step", None))))  # "prepare digits"
    try:
        with warnings.catch_warnings():
            if not args.debug:  # a warning is one line, like an error: no source line of ours
                warnings.showwarning = _one_line_warning
            return func(args)
    except UsageError as exc:
        if args.debug:
            raise
        _subcommand_parser(parser, argv).print_usage(sys.stderr)
        print(f"tsm {name}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"tsm {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a library's own error type: still one line, not a traceback
        if args.debug:
            raise
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        print(f"tsm {name}: error: {type(exc).__name__}: {first} (--debug shows where)", file=sys.stderr)
        return 1


def run() -> None:
    """Console-script wrapper: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
