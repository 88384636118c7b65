"""Recognise actions in video files: the model's own test protocol, top-k class names.

    model = ts.create_model("tsm_r50_1x1x8_k400", pretrained=True)
    ts.predict("video.mp4", model=model, topk=5).labels      # ['playing guitar', ...]

A folder or a glob is read by a DataLoader (decoding overlaps the model), with a progress bar; a
video that cannot be decoded gives a failed :class:`Prediction` and the others go on.
"""

from __future__ import annotations

import copy
import glob
import os
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from temporalshift.data.datasets import read_label_map
from temporalshift.data.decode import VideoDecodeError, open_video
from temporalshift.data.files import find_videos
from temporalshift.data.sampling import SamplingSpec, sample_test
from temporalshift.data.transforms import TestTransform, to_clip
from temporalshift.models.zoo import ModelSpec
from temporalshift.results import Prediction

BUNDLED_LABELS: tuple[str, ...] = ("kinetics400", "sthv2", "jester", "moving_digits")


def class_names(
    labels: str | os.PathLike[str] | Sequence[str] | None, num_classes: int, default: str | None = None
) -> list[str]:
    """Class names: a bundled set (``kinetics400``, ``sthv2``, ``jester``), a label-map file, a list,
    or (``None``) the model's own set when its size fits, else ``class 0``, ``class 1``..."""
    if labels is None:
        labels = default if default in BUNDLED_LABELS else None
        if labels is not None and len(_bundled(labels)) != num_classes:
            labels = None
        if labels is None:
            return [f"class {i}" for i in range(num_classes)]
    if isinstance(labels, str) and labels in BUNDLED_LABELS:
        names = _bundled(labels)
    elif isinstance(labels, (str, os.PathLike)):
        names = read_label_map(labels)
    else:
        names = list(labels)
    if len(names) != num_classes:
        raise ValueError(f"the label set has {len(names)} classes, the model {num_classes}")
    return names


def _bundled(name: str) -> list[str]:
    text = resources.files("temporalshift").joinpath(f"labels/{name}.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def expand_sources(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Files as given, folders searched for videos, shell globs expanded (sorted)."""
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    out: list[str] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            out += [str(p) for p in find_videos(path)]
        elif any(c in text for c in "*?[") and not path.exists():
            out += sorted(glob.glob(text, recursive=True))
        else:
            out.append(text)
    if not out:
        raise FileNotFoundError(f"no videos found in {', '.join(map(str, items))}")
    return out


class Predictor:
    """A model (PyTorch or an exported ONNX file) plus the preprocessing of its test protocol.

    Args:
        model: a :class:`~temporalshift.models.recognizer.Recognizer` (with ``spec``).
        onnx: path of a model exported by :func:`temporalshift.export.export_onnx` (instead of ``model``).
        labels: class names (see :func:`class_names`).
        clips / crops / twice_sample: override the zoo entry's test views.
        backend: video reader backend.
        fast: run :func:`~temporalshift.performance.optimize_for_inference`'s form of the model (BN
            folded, fused convolutions, channels-last: the same outputs to 1e-4 in about 1.4x less
            time on CPUs, measured by ``tsm bench``).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        onnx: str | os.PathLike[str] | None = None,
        labels: str | os.PathLike[str] | Sequence[str] | None = None,
        clips: int | None = None,
        crops: str | None = None,
        twice_sample: bool | None = None,
        backend: str = "pyav",
        fast: bool = True,
    ) -> None:
        if (model is None) == (onnx is None):
            raise ValueError("give a model or an onnx file (one of them)")
        self.session = None
        if onnx is not None:
            from temporalshift.export import load_onnx

            self.session, spec = load_onnx(onnx)
            self.model = None
        else:
            spec = getattr(model, "spec", None)
            if spec is None:
                raise ValueError("the model has no .spec; build it with temporalshift.create_model")
            if fast:  # a copy in eval mode: the caller's model is left as it was
                from temporalshift.performance import optimize_for_inference

                self.model = optimize_for_inference(model)
            else:  # a plain copy in eval mode, likewise
                self.model = copy.deepcopy(model).eval()
        self.spec: ModelSpec = spec
        if clips is not None and (not isinstance(clips, int) or isinstance(clips, bool) or clips < 1):
            raise ValueError(f"clips must be a whole number of at least 1, got {clips!r}")
        self.names = class_names(labels, spec.num_classes, spec.labels)
        self.sampling = SamplingSpec(
            mode=spec.sampling,
            num_segments=spec.num_segments,
            test_clips=spec.test_clips if clips is None else clips,
            twice_sample=spec.twice_sample if twice_sample is None else twice_sample,
        )
        size = spec.input_size
        self.transform = TestTransform(size=size, resize_short=round(size * 256 / 224), crops=crops or spec.test_crops,
                                       mean=spec.mean, std=spec.std)  # fmt: skip
        self.backend = backend

    def load(self, path: str) -> tuple[Tensor, np.ndarray]:
        """Decode and transform one video: views ``(V, T, 3, H, W)`` and their frame indices."""
        with open_video(path, self.backend) as reader:
            indices = sample_test(len(reader), self.sampling)
            frames = reader.get_frames(indices.reshape(-1).tolist())
        clips = to_clip(frames).unflatten(0, indices.shape)
        return torch.cat([self.transform(c) for c in clips]), indices

    @torch.inference_mode()
    def scores(self, views: Tensor) -> np.ndarray:
        """Class probabilities averaged over the views of one video."""
        if self.session is not None:
            batch = self.session.get_inputs()[0].shape[0]  # an int unless exported with --dynamic-batch
            step = batch if isinstance(batch, int) and batch > 0 else len(views)
            clips = views.numpy()
            parts = [self.session.run(None, {"clip": clips[i : i + step]})[0] for i in range(0, len(clips), step)]
            logits = torch.from_numpy(np.concatenate(parts))
        else:
            logits = self.model(views).float()
        return logits.softmax(-1).mean(0).numpy()

    def to_prediction(
        self, source: str, probs: np.ndarray, indices: np.ndarray, topk: int, timings: dict
    ) -> Prediction:
        order = np.argsort(-probs)[:topk]
        return Prediction(source, [self.names[i] for i in order], [float(probs[i]) for i in order],
                          [int(i) for i in order], indices.tolist(), timings)  # fmt: skip

    def __call__(self, source: str, topk: int = 5) -> Prediction:
        _check_topk(topk)
        t0 = time.perf_counter()
        try:
            views, indices = self.load(source)
        except (VideoDecodeError, OSError, IndexError) as exc:
            return Prediction.failed(source, str(exc))
        t1 = time.perf_counter()
        probs = self.scores(views)
        t2 = time.perf_counter()
        return self.to_prediction(source, probs, indices, topk, {"decode_s": t1 - t0, "model_s": t2 - t1})


class _Videos(torch.utils.data.Dataset):
    def __init__(self, paths: list[str], predictor: Predictor) -> None:
        self.paths, self.predictor = paths, predictor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any, Any, float]:
        t0 = time.perf_counter()
        try:
            views, indices = self.predictor.load(self.paths[i])
            return i, views, indices, time.perf_counter() - t0
        except (VideoDecodeError, OSError, IndexError) as exc:
            return i, None, str(exc), time.perf_counter() - t0


def _check_topk(topk: int) -> None:
    if not isinstance(topk, int) or isinstance(topk, bool) or topk < 1:
        raise ValueError(f"topk must be a whole number of at least 1, got {topk!r}")


def predict_many(predictor: Predictor, paths: list[str], topk: int = 5, workers: int = 1, progress: bool = True):
    """Yield a :class:`Prediction` per path, in order, decoding in ``workers`` processes."""
    _check_topk(topk)
    loader = torch.utils.data.DataLoader(_Videos(paths, predictor), batch_size=None, num_workers=workers)
    bar = None
    if progress and len(paths) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="predicting", unit="video", dynamic_ncols=True, leave=False)
    for i, views, indices, decode_s in loader:
        if views is None:
            yield Prediction.failed(paths[i], indices)
        else:
            t0 = time.perf_counter()
            probs = predictor.scores(views)
            timings = {"decode_s": decode_s, "model_s": time.perf_counter() - t0}
            yield predictor.to_prediction(paths[i], probs, indices, topk, timings)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()


def predict(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    model: nn.Module | None = None,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    topk: int = 5,
    onnx: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Prediction | list[Prediction]:
    """Predict the actions in a video (a :class:`Prediction`) or in many (a list).

    ``source`` is a file, a folder, a glob or a list of them; ``options`` go to :class:`Predictor`
    (``clips``, ``crops``, ``twice_sample``, ``backend``, ``fast``).
    """
    _check_topk(topk)
    predictor = Predictor(model, onnx, labels, **options)
    paths = expand_sources(source)
    if isinstance(source, (str, os.PathLike)) and paths == [str(source)]:  # one file (a missing one fails alone)
        return predictor(paths[0], topk)
    return list(predict_many(predictor, paths, topk, workers=0, progress=False))


def annotate_video(source: str, out_path: str | os.PathLike[str], prediction: Prediction, k: int = 3) -> Path:
    """Write ``source`` again with its top-``k`` predictions drawn on every frame."""
    from PIL import Image, ImageDraw

    from temporalshift.data.encode import write_video
    from temporalshift.data.prepare import _iter_frames

    with open_video(source) as reader:
        fps = reader.fps or 25.0
    lines = [f"{label}: {100 * score:.1f}%" for label, score in prediction.topk(k)]

    def frames():
        for rgb in _iter_frames(Path(source), None):
            image = Image.fromarray(rgb)
            draw = ImageDraw.Draw(image)
            h = max(12, image.height // 20)
            for j, text in enumerate(lines):
                draw.rectangle([0, j * h, min(image.width, 8 * len(text) + 8), (j + 1) * h], fill=(0, 0, 0))
                draw.text((4, j * h + 1), text, fill=(255, 255, 0))
            yield np.asarray(image)

    write_video(out_path, frames(), fps=fps)
    return Path(out_path)
