"""Annotation formats, label maps, and a dataset that never stops on bad videos."""

import json
import logging

import pytest
import torch
from torch.utils.data import DataLoader

from temporalshift.data.datasets import (
    BadVideoLog,
    VideoDataset,
    VideoRecord,
    collate_test,
    read_annotations,
    read_label_map,
    read_sthv2,
)
from temporalshift.data.sampling import SamplingSpec
from temporalshift.data.synthetic import read_frame_number
from temporalshift.data.transforms import TestTransform, TrainTransform


@pytest.fixture
def bad_videos(tmp_path, numbered_videos):
    """The four classic broken inputs, next to one good video."""
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    data = numbered_videos["mp4"].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    text = tmp_path / "text.mp4"
    text.write_text("definitely not a video\n" * 50)
    return {"empty": empty, "truncated": truncated, "text": text, "missing": tmp_path / "missing.mp4"}


def _train_ds(records, **kw):
    return VideoDataset(records, SamplingSpec(num_segments=4), TrainTransform(size=32, resize_short=48), **kw)


def test_corrupt_videos_are_logged_counted_and_replaced_in_training(bad_videos, numbered_videos, caplog):
    records = [VideoRecord(str(p), i) for i, p in enumerate(bad_videos.values())]
    records.append(VideoRecord(str(numbered_videos["mp4"]), 9))
    ds = _train_ds(records, seed=1)
    with caplog.at_level(logging.WARNING, logger="temporalshift.data"):
        items = [ds[i] for i in range(len(ds))]
    assert all(clip.shape == (4, 3, 32, 32) for clip, _ in items)
    assert all(label == 9 for _, label in items)  # every bad one was replaced by the good video
    bad = ds.bad.entries()
    assert set(bad) == {str(p) for p in bad_videos.values()}
    assert "no such file" in bad[str(bad_videos["missing"])] and "empty" in bad[str(bad_videos["empty"])]
    assert all(str(p) in caplog.text for p in bad_videos.values())
    summary = ds.bad.summary()
    assert summary.startswith("skipped 4 unreadable video(s):") and str(bad_videos["text"]) in summary


def test_corrupt_videos_are_reported_and_left_out_in_testing(bad_videos, numbered_videos):
    records = [VideoRecord(str(numbered_videos["mp4"]), 3)] + [VideoRecord(str(p), 0) for p in bad_videos.values()]
    ds = VideoDataset(records, SamplingSpec(num_segments=4, twice_sample=True), TestTransform(size=32, resize_short=48))
    batch = collate_test([ds[i] for i in range(len(ds))])
    views, labels, indices = batch
    assert views.shape == (1, 2, 4, 3, 32, 32) and labels.tolist() == [3] and indices.tolist() == [0]
    assert len(ds.bad.entries()) == 4
    assert collate_test([None, None]) is None


def test_counts_from_dataloader_workers_reach_the_main_process(bad_videos, numbered_videos, tmp_path):
    records = [VideoRecord(str(numbered_videos["mp4"]), 0)] * 6 + [VideoRecord(str(bad_videos["text"]), 1)] * 2
    ds = _train_ds(records, bad_log=BadVideoLog(tmp_path / "bad.tsv"))
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    assert sum(len(y) for _, y in loader) == 8
    assert list(ds.bad.entries()) == [str(bad_videos["text"])]
    assert (tmp_path / "bad.tsv").read_text().count("\n") >= 2  # tried (at least) twice, counted once


def test_the_default_temporary_log_outlives_workers_and_goes_with_its_dataset(bad_videos, numbered_videos):
    import gc
    from pathlib import Path

    records = [VideoRecord(str(numbered_videos["mp4"]), 0)] * 6 + [VideoRecord(str(bad_videos["text"]), 1)] * 2
    ds = _train_ds(records)  # no bad_log: a temporary file
    path = Path(ds.bad.path)
    for _ in range(2):  # forked workers start and exit with copies of the log: the file stays
        assert sum(len(y) for _, y in DataLoader(ds, batch_size=4, num_workers=2)) == 8
        assert path.exists() and list(ds.bad.entries()) == [str(bad_videos["text"])]
    del ds
    gc.collect()
    assert not path.exists()  # no file left behind in the temporary directory


def test_a_dataset_pointing_at_nothing_fails_fast(tmp_path):
    ann = tmp_path / "train.txt"
    ann.write_text("videos/a.mp4 0\nvideos/b.mp4 1\n")
    with pytest.raises(ValueError, match="none of the 2 videos in this dataset can be read"):
        VideoDataset.from_file(ann, sampling=SamplingSpec(), transform=TrainTransform())


def test_all_replacements_failing_is_one_clear_error(bad_videos, tmp_path):
    ds = _train_ds([VideoRecord(str(bad_videos["text"]), 0)], max_replacements=3)
    with pytest.raises(RuntimeError, match="4 unreadable videos in a row"):
        ds[0]


def test_training_items_are_deterministic_per_seed_and_epoch(numbered_videos):
    ds = _train_ds([VideoRecord(str(numbered_videos["mp4"]), 0)], seed=3)
    a, b = ds[0][0], ds[0][0]
    assert torch.equal(a, b)
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0][0])


def test_frame_folder_dataset_samples_the_right_frames(numbered_videos):
    rec = VideoRecord(str(numbered_videos["frames"]), 2, num_frames=60)
    ds = VideoDataset([rec], SamplingSpec(num_segments=4), TestTransform(size=64, resize_short=None, crops="full"))
    views, label, _ = ds[0]
    frames = views[0].permute(0, 2, 3, 1) * torch.tensor([0.229, 0.224, 0.225]) + torch.tensor([0.485, 0.456, 0.406])
    numbers = [read_frame_number((f * 255).round().clamp(0, 255).byte().numpy()) for f in frames]
    assert numbers == [7, 22, 37, 52] and label == 2


def test_annotation_formats(tmp_path):
    ann = tmp_path / "list.txt"
    ann.write_text("# mmaction2 video list\nclips/a b.mp4 3\n\nframes/x 120 7\n")
    recs = read_annotations(ann, root="/data")
    assert recs == [VideoRecord("/data/clips/a b.mp4", 3), VideoRecord("/data/frames/x", 7, 120)]
    ann.write_text("video.mp4 notalabel\n")
    with pytest.raises(ValueError, match="list.txt:1: expected"):
        read_annotations(ann)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        read_annotations(tmp_path / "nope.txt")


def test_annotation_lists_with_a_byte_order_mark_bad_labels_or_empty_folders(tmp_path):
    ann = tmp_path / "list.txt"
    ann.write_bytes("\ufeffa.mp4 1\n".encode())  # Notepad's UTF-8: the mark is no part of the path
    assert read_annotations(ann, root="/d") == [VideoRecord("/d/a.mp4", 1)]
    for text, message in (("a.mp4 0\nb.mp4 -1\n", "list.txt:2: labels are class indices from 0, got -1"),
                          ("frames/a 0 1\n", "list.txt:1: a frame folder needs at least one frame")):  # fmt: skip
        ann.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_annotations(ann)


def test_label_maps(tmp_path):
    plain = tmp_path / "labels.txt"
    plain.write_text("abseiling\nair drumming\n")
    assert read_label_map(plain) == ["abseiling", "air drumming"]
    ucf = tmp_path / "classInd.txt"
    ucf.write_text("1 ApplyEyeMakeup\n2 ApplyLipstick\n")
    assert read_label_map(ucf) == ["ApplyEyeMakeup", "ApplyLipstick"]
    sth = tmp_path / "labels.json"
    sth.write_text(json.dumps({"Holding something": "1", "Approaching something with your camera": "0"}))
    assert read_label_map(sth) == ["Approaching something with your camera", "Holding something"]


def test_sthv2_json(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"Holding something next to something": "0"}))
    (tmp_path / "train.json").write_text(json.dumps(
        [{"id": "78687", "label": "holding potato next to vicks", "template": "Holding [something] next to [something]",
          "placeholders": ["potato", "vicks"]}]))  # fmt: skip
    recs = read_sthv2(tmp_path / "train.json", tmp_path / "labels.json", tmp_path / "videos")
    assert recs == [VideoRecord(str(tmp_path / "videos" / "78687.webm"), 0)]


class _EpochProbe(VideoDataset):
    def __getitem__(self, index):
        return torch.tensor([self.epoch])


def test_every_epoch_reaches_persistent_loader_workers(numbered_videos):
    # the workers hold copies of the dataset made at their start: augmentation must still change per epoch
    ds = _EpochProbe([VideoRecord(str(numbered_videos["mp4"]), 0)] * 4, SamplingSpec(), TestTransform())
    loader = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True)
    for epoch in range(3):
        ds.set_epoch(epoch)
        assert torch.cat(list(loader)).flatten().tolist() == [epoch] * 4
