"""Dataset preparation: frame extraction, resizing, and checking (and repairing) videos.

Every job runs in a process pool with a progress bar, is resumable (finished outputs are
skipped) and writes atomically (a frame folder is filled under a temporary name and renamed when
complete; a video goes through :func:`temporalshift.atomic.atomic_path`). A failing video
is reported and counted; it never stops the others.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from temporalshift.atomic import publish_mode
from temporalshift.data.datasets import VideoRecord
from temporalshift.data.decode import (
    DEFAULT_FRAME_TEMPLATE,
    VideoDecodeError,
    _short,
    open_video,
    quarter_turns,
    upright,
)
from temporalshift.data.encode import write_video


@dataclass
class JobResult:
    """The outcome of one job: ``status`` is ``"done"``, ``"skipped"`` (already there) or ``"failed"``."""

    source: str
    status: str
    detail: str = ""


def run_jobs(
    func: Callable[..., JobResult], jobs: Sequence[tuple], workers: int = 0, desc: str = "working"
) -> list[JobResult]:
    """Run ``func(*job)`` for every job in a process pool (``workers=0``: one per core)."""
    from tqdm import tqdm

    if workers < 0:
        raise ValueError(f"--workers must be 0 (one per core) or more, got {workers}")
    workers = workers or os.cpu_count() or 1
    results: list[JobResult] = []
    with tqdm(total=len(jobs), desc=desc, unit="video", dynamic_ncols=True) as bar:
        if workers == 1:
            for job in jobs:
                results.append(_safe(func, job))
                bar.update(1)
            return results
        pool = ProcessPoolExecutor(max_workers=workers)
        try:
            futures = [pool.submit(_safe, func, job) for job in jobs]
            for future in as_completed(futures):
                results.append(future.result())
                bar.update(1)
        finally:  # on Ctrl-C: the jobs not started yet are dropped, not run to the end
            pool.shutdown(wait=True, cancel_futures=True)
    return results


def _safe(func: Callable[..., JobResult], job: tuple) -> JobResult:
    """Turn any error of one job into a failed result: one bad video must never stop the batch."""
    try:
        return func(*job)
    except VideoDecodeError as exc:
        return JobResult(str(job[0]), "failed", exc.reason)  # the source is printed beside it already
    except (OSError, ValueError, RuntimeError) as exc:
        return JobResult(str(job[0]), "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. PyAV's EOFError on a truncated file
        return JobResult(str(job[0]), "failed", f"{type(exc).__name__}: {_short(exc)}")


def check_outputs(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Refuse ``(source, output)`` pairs where two sources share an output (``clip.mp4``, ``clip.mkv``)
    or one output lies inside another: the second would be taken as already done, or mixed in."""
    owner: dict[Path, Path] = {}
    clashes = []
    for source, out in pairs:
        if out in owner:
            clashes.append(f"{owner[out]} and {source} would both be written to {out}")
        owner[out] = source
    if clashes:  # all of them at once, not one per attempt
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise ValueError("; ".join(clashes[:3]) + more + ": rename one of each")
    for source, out in pairs:
        for parent in out.parents:
            if parent in owner:
                raise ValueError(
                    f"{source} would be written inside {parent}, the output of {owner[parent]}: rename one"
                )


def check_frame_template(template: str) -> None:
    """A frame file name with one number field and an image suffix, e.g. ``img_{:05d}.jpg``."""
    try:
        name = template.format(1)
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"--template {template!r} is not a file name with one {{}} number field ({exc})") from None
    if "/" in name or os.sep in name or name == template.format(2):
        raise ValueError(f"--template {template!r} must give one file name per frame number, without folders")
    if Path(name).suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise ValueError(f"--template {template!r} must end in .jpg, .jpeg or .png")


def check_short_side(short_side: int | None) -> None:
    """Refused up front: a short side below 1 pixel would write nonsense or nothing."""
    if short_side is not None and short_side < 1:
        raise ValueError(f"the short side must be at least 1 pixel, got {short_side}")


def _scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    if not short_side:
        return height, width
    scale = short_side / min(height, width)
    # Even sides: H.264 with 4:2:0 chroma needs them.
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def _iter_frames(path: Path, short_side: int | None) -> Iterable[np.ndarray]:
    """Decode every frame in order (skipping undecodable packets), resized by the short side, upright."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise VideoDecodeError(path, f"cannot open ({_short(exc)})") from None
    try:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        size = None
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError:
                break  # the demuxer lost its way: keep what came before
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # a damaged packet: keep what can be decoded
            for frame in frames:
                turns = quarter_turns(frame)  # read before reformat, which keeps no display matrix
                if size is None:  # scaled as stored; the short side is the same one upright
                    size = _scaled_size(frame.height, frame.width, short_side)
                if (frame.height, frame.width) != size:
                    frame = frame.reformat(width=size[1], height=size[0])
                yield upright(frame.to_ndarray(format="rgb24"), turns)
    finally:
        container.close()


def extract_frames(
    video: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    short_side: int | None = None,
    template: str = DEFAULT_FRAME_TEMPLATE,
    quality: int = 95,
) -> JobResult:
    """Write every frame of ``video`` as JPEGs ``out_dir/img_00001.jpg...`` (atomic, resumable)."""
    from PIL import Image

    check_short_side(short_side)
    out_dir = Path(out_dir)
    if out_dir.is_dir():
        return JobResult(str(video), "skipped")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
    try:
        count = 0
        for count, rgb in enumerate(_iter_frames(Path(video), short_side), start=1):
            Image.fromarray(rgb).save(tmp / template.format(count), quality=quality)
        if count == 0:
            raise VideoDecodeError(video, "no frame could be decoded")
        publish_mode(tmp, out_dir, folder=True)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return JobResult(str(video), "done", f"{count} frames")


def resize_video(video: str | os.PathLike[str], out_path: str | os.PathLike[str], short_side: int = 256) -> JobResult:
    """Re-encode ``video`` with its short side scaled to ``short_side`` (H.264, atomic, resumable)."""
    check_short_side(short_side)
    out_path = Path(out_path)
    if out_path.exists():
        return JobResult(str(video), "skipped")
    with open_video(video) as reader:
        fps = reader.fps or 30.0
    count = write_video(out_path, _iter_frames(Path(video), short_side), fps=fps)
    return JobResult(str(video), "done", f"{count} frames")


@dataclass
class VideoCheck:
    """What checking one video found; ``problem`` is empty for a good one."""

    path: str
    frames: int | None
    claimed: int | None
    problem: str = ""
    repaired: bool = False


def check_video(
    record: VideoRecord, full: bool = False, repair: bool = False, template: str = DEFAULT_FRAME_TEMPLATE
) -> VideoCheck:
    """Open ``record``, count its frames, decode a few (or, with ``full``, all) of them; frame
    folders hold files named by ``template``.

    With ``repair``, a video file whose packets partly fail to decode is re-encoded from the
    frames that do decode; the original is kept beside it as ``NAME.broken``.
    """
    check = VideoCheck(record.path, None, record.num_frames)
    try:
        with open_video(record.path, frame_template=template) as reader:
            check.frames = len(reader)
            check.problem = getattr(reader, "damage", None) or ""
            n = len(reader)
            probe = range(n) if full else sorted({0, n // 2, n - 1})
            for start in range(0, len(probe), 64):
                reader.get_frames(list(probe[start : start + 64]))
        if not check.problem and record.num_frames is not None and check.frames < record.num_frames:
            check.problem = f"has {check.frames} frames, the list claims {record.num_frames}"
    except VideoDecodeError as exc:
        check.problem = exc.reason
    if check.problem and repair and not record.is_frames and Path(record.path).is_file():
        check.repaired = _repair(Path(record.path))
    return check


def _repair(path: Path) -> bool:
    backup = path.with_name(path.name + ".broken")
    try:
        frames = list(_iter_frames(path, None))
    except Exception:  # noqa: BLE001 - a file PyAV cannot even open cannot be repaired
        return False
    if not frames:
        return False
    shutil.copy2(path, backup)
    codec = "libvpx-vp9" if path.suffix.lower() == ".webm" else "libx264"  # what the container takes
    try:
        write_video(path, frames, fps=_fps(path), codec=codec)
    except Exception:  # noqa: BLE001 - the original stays in place, untouched: no backup needed
        backup.unlink(missing_ok=True)
        return False
    return True


def _fps(path: Path) -> float:
    import av

    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else 30.0
    except Exception:  # noqa: BLE001
        return 30.0


def _check_job(record: VideoRecord, full: bool, repair: bool, template: str) -> JobResult:
    check = check_video(record, full, repair, template)
    return JobResult(record.path, "failed" if check.problem else "done", json.dumps(asdict(check)))


def check_dataset(
    records: Sequence[VideoRecord],
    report: str | os.PathLike[str] | None = None,
    full: bool = False,
    repair: bool = False,
    workers: int = 0,
    template: str = DEFAULT_FRAME_TEMPLATE,
) -> list[VideoCheck]:
    """Check every video of a dataset in parallel; write the problems to ``report`` (json)."""
    results = run_jobs(_check_job, [(r, full, repair, template) for r in records], workers, "checking videos")
    checks = []
    for res in results:
        if res.detail.startswith("{"):
            checks.append(VideoCheck(**json.loads(res.detail)))
        else:  # the job itself failed
            checks.append(VideoCheck(res.source, None, None, res.detail))
    checks.sort(key=lambda c: c.path)
    if report is not None:
        write_check_report(checks, report)
    return checks


def write_check_report(checks: Sequence[VideoCheck], report: str | os.PathLike[str]) -> None:
    """The problems found, as json (written whole or not at all)."""
    from temporalshift.atomic import atomic_path

    bad = [asdict(c) for c in checks if c.problem]
    with atomic_path(report) as tmp:
        tmp.write_text(json.dumps({"checked": len(checks), "problems": bad}, indent=1))
