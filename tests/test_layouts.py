"""Miniature copies of each public dataset's official layout -> annotation lists and label maps."""

import json
import shutil

import pytest

from temporalshift.atomic import _umask
from temporalshift.cli import main
from temporalshift.data.datasets import VideoDataset, read_annotations, read_label_map
from temporalshift.data.layouts import read_layout, write_layout
from temporalshift.data.sampling import SamplingSpec
from temporalshift.data.transforms import TestTransform


def _video(src, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)


def _frames(src_dir, dest, n=5):
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        shutil.copy(src_dir / f"img_{i:05d}.jpg", dest / f"{i:05d}.jpg")


def _check_loadable(written, root):
    records = read_annotations(written["train"], root)
    ds = VideoDataset(records, SamplingSpec(num_segments=2), TestTransform(size=32, resize_short=None, crops="full"))
    assert ds[0] is not None  # the list points at real, decodable videos


@pytest.mark.parametrize("name", ["kinetics400", "kinetics600", "kinetics700"])
def test_kinetics(tmp_path, numbered_videos, name):
    root = tmp_path / name
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "playing guitar,aaaaaaaaaaa,10,20,train\nabseiling,bbbbbbbbbbb,0,10,train\n"
        "abseiling,ccccccccccc,5,15,train\n"
    )
    (root / "annotations" / "val.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,ddddddddddd,1,11,val\n"
    )
    (root / "annotations" / "test.csv").write_text("youtube_id,time_start,time_end,split\neeeeeeeeeee,0,10,test\n")
    _video(numbered_videos["mp4"], root / "videos/train/playing guitar/aaaaaaaaaaa_000010_000020.mp4")
    _video(numbered_videos["mp4"], root / "videos/train/abseiling/bbbbbbbbbbb_000000_000010.mp4")
    _video(numbered_videos["mp4"], root / "videos/val/ddddddddddd_000001_000011.mp4")  # flat layout
    layout = read_layout(name, root)
    assert layout.classes == ["abseiling", "playing guitar"]
    assert sorted(layout.splits) == ["train", "val"]  # test.csv has no labels
    assert sorted(label for _, label, _ in layout.splits["train"]) == [0, 1]
    assert layout.missing == {"train": 1, "val": 0}
    written = write_layout(layout, name, root)
    assert written["train"].name == f"{name}_train_list_videos.txt"
    assert read_label_map(written["label_map"]) == ["abseiling", "playing guitar"]
    assert written["val"].read_text() == "videos/val/ddddddddddd_000001_000011.mp4 0\n"
    _check_loadable(written, root)


def test_kinetics_matches_each_row_to_its_own_clip_through_symlinked_folders(tmp_path, numbered_videos):
    root = tmp_path / "k400"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_bytes(  # with the byte-order mark some exports carry
        "\ufefflabel,youtube_id,time_start,time_end,split\nabseiling,EEEEEEEEEEE,10,20,train\n"
        "zumba,EEEEEEEEEEE,100,110,train\nabseiling,FFFFFFFFFFF,0,10,train\n".encode()
    )
    disk = tmp_path / "other_disk"  # the class folders live elsewhere, linked in
    for name in ("EEEEEEEEEEE_000010_000020.mp4", "EEEEEEEEEEE_000100_000110.mp4", "FFFFFFFFFFF.mp4"):
        _video(numbered_videos["mp4"], disk / name)
    (disk / "FFFFFFFFFFF.mp4.broken").write_text("the backup tsm prepare check --repair keeps")
    (root / "videos").mkdir()
    (root / "videos" / "train").symlink_to(disk)
    layout = read_layout("kinetics400", root)
    assert layout.splits["train"] == [  # one file per row, the right one; named by id alone where unique
        ("videos/train/EEEEEEEEEEE_000010_000020.mp4", 0, None),
        ("videos/train/EEEEEEEEEEE_000100_000110.mp4", 1, None),
        ("videos/train/FFFFFFFFFFF.mp4", 0, None),
    ]
    (root / "annotations" / "val.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nyoga,GGGGGGGGGGG,0,10,val\n"
    )
    _video(numbered_videos["mp4"], root / "videos/val/GGGGGGGGGGG_000000_000010.mp4")
    with pytest.raises(ValueError, match=r"val.csv:2: class 'yoga' is not one of the 2 classes of train.csv"):
        read_layout("kinetics400", root)


def test_something_something_v2(tmp_path, numbered_videos):
    root = tmp_path / "sthv2"
    (root / "labels").mkdir(parents=True)
    (root / "labels/labels.json").write_text(json.dumps({"Pushing something from left to right": "1",
                                                         "Holding something": "0"}))  # fmt: skip
    items = [{"id": "11", "template": "Holding [something]"},
             {"id": "12", "template": "Pushing [something] from left to right"}]  # fmt: skip
    (root / "labels/train.json").write_text(json.dumps(items))
    (root / "labels/validation.json").write_text(json.dumps(items[:1]))
    for vid in ("11", "12"):
        _video(numbered_videos["mp4"], root / f"20bn-something-something-v2/{vid}.webm")
    layout = read_layout("sthv2", root)
    assert layout.classes == ["Holding something", "Pushing something from left to right"]
    assert layout.splits["train"] == [("20bn-something-something-v2/11.webm", 0, None),
                                      ("20bn-something-something-v2/12.webm", 1, None)]  # fmt: skip
    written = write_layout(layout, "sthv2", root)
    _check_loadable(written, root)


@pytest.mark.parametrize("name, prefix, frames_dir", [
    ("sthv1", "something-something-v1", "20bn-something-something-v1"),
    ("jester", "jester-v1", "20bn-jester-v1"),
])  # fmt: skip
def test_twenty_bn_frame_datasets(tmp_path, numbered_videos, name, prefix, frames_dir):
    root = tmp_path / name
    root.mkdir()
    (root / f"{prefix}-labels.csv").write_text("Doing other things\nSwiping Left\n")
    (root / f"{prefix}-train.csv").write_text("100;Swiping Left\n101;Doing other things\n102;Swiping Left\n")
    (root / f"{prefix}-validation.csv").write_text("200;Doing other things\n")
    _frames(numbered_videos["frames"], root / frames_dir / "100", n=5)
    _frames(numbered_videos["frames"], root / frames_dir / "101", n=7)
    _frames(numbered_videos["frames"], root / frames_dir / "200", n=3)
    (root / frames_dir / "103").mkdir()  # an empty folder: left out like a missing one
    (root / f"{prefix}-train.csv").write_text((root / f"{prefix}-train.csv").read_text() + "103;Swiping Left\n")
    layout = read_layout(name, root)
    assert layout.frames and layout.classes == ["Doing other things", "Swiping Left"]
    assert layout.splits["train"] == [(f"{frames_dir}/100", 1, 5), (f"{frames_dir}/101", 0, 7)]
    assert layout.missing["train"] == 2 and layout.frame_template == "{:05d}.jpg"
    written = write_layout(layout, name, root)
    assert written["train"].name == f"{name}_train_list_rawframes.txt"
    assert written["val"].read_text() == f"{frames_dir}/200 3 0\n"
    records = read_annotations(written["train"], root)
    ds = VideoDataset(records, SamplingSpec(num_segments=2), TestTransform(size=32, resize_short=None, crops="full"),
                      frame_template="{:05d}.jpg")  # fmt: skip
    assert ds[0][0].shape == (1, 2, 3, 32, 32)


def test_ucf101(tmp_path, numbered_videos):
    root = tmp_path / "ucf101"
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n"
    )
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    for rel in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Archery_g08_c01.avi",
                "Archery/v_Archery_g01_c01.avi"):  # fmt: skip
        _video(numbered_videos["mkv"], root / "UCF-101" / rel)
    layout = read_layout("ucf101", root, split_id=1)
    assert layout.classes == ["ApplyEyeMakeup", "Archery"]
    assert [label for _, label, _ in layout.splits["train"]] == [0, 1]
    assert layout.splits["val"] == [("UCF-101/Archery/v_Archery_g01_c01.avi", 1, None)]
    written = write_layout(layout, "ucf101", root)
    assert written["train"].name == "ucf101_train_split_1_list_videos.txt"  # split 2's lists go beside them
    _check_loadable(written, root)
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        read_layout("ucf101", root, split_id=2)
    with pytest.raises(ValueError, match="official splits 1, 2 and 3, not 0"):
        read_layout("ucf101", root, split_id=0)
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 2\nArchry/v_Archery_g01_c01.avi 2\n")
    _video(numbered_videos["mkv"], root / "UCF-101/Archry/v_Archery_g01_c01.avi")
    with pytest.raises(ValueError, match=r"trainlist01.txt:2: class 'Archry' is not one of the 2 classes"):
        read_layout("ucf101", root, split_id=1)


def test_hmdb51(tmp_path, numbered_videos):
    root = tmp_path / "hmdb51"
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "cartwheel_test_split1.txt").write_text("d.avi 1 \n")
    for cls, vid in (("brush_hair", "a.avi"), ("brush_hair", "b.avi"), ("cartwheel", "d.avi")):
        _video(numbered_videos["mp4"], root / "hmdb51" / cls / vid)
    layout = read_layout("hmdb51", root)
    assert layout.classes == ["brush_hair", "cartwheel"]
    assert layout.splits["train"] == [
        ("hmdb51/brush_hair/a.avi", 0, None),
        ("hmdb51/cartwheel/d.avi", 1, None),
    ]
    assert layout.splits["val"] == [("hmdb51/brush_hair/b.avi", 0, None)]
    _check_loadable(write_layout(layout, "hmdb51", root), root)


def test_cli_prepare_annotations(tmp_path, numbered_videos, capsys):
    root = tmp_path / "hmdb"
    (root / "testTrainMulti_7030_splits").mkdir(parents=True)
    (root / "testTrainMulti_7030_splits/run_test_split1.txt").write_text("x.avi 1\ny.avi 2\n")
    _video(numbered_videos["mp4"], root / "hmdb51/run/x.avi")
    assert main(["prepare", "annotations", "hmdb51", str(root), "--out", str(tmp_path / "lists")]) == 0
    out = capsys.readouterr().out
    assert "train: 1 videos" in out and "val: 0 videos" in out and "1 listed videos not found" in out
    assert (tmp_path / "lists/hmdb51_label_map.txt").read_text() == "run\n"
    assert (tmp_path / "lists/hmdb51_label_map.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()  # not 0600
    assert main(["prepare", "annotations", "hmdb51", str(tmp_path / "nowhere")]) == 1
    assert "dataset root not found" in capsys.readouterr().err
    assert (
        main(["prepare", "annotations", "hmdb51", str(root), "--out", str(tmp_path / "lists/run_label_map.txt")]) == 0
    )
    assert (
        main(["prepare", "annotations", "hmdb51", str(root), "--out", str(tmp_path / "lists/hmdb51_label_map.txt")])
        == 1
    )
    assert "is a file; the lists go into a folder" in capsys.readouterr().err


def test_annotations_help_describes_every_layout(capsys):
    import pytest

    from temporalshift.cli import main

    with pytest.raises(SystemExit) as done:
        main(["prepare", "annotations", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for where in ("annotations/{train,val,test}.csv", "labels/{labels,train,validation}.json", "ucfTrainTestlist/",
                  "testTrainMulti_7030_splits/", "20bn-jester-v1/", "20bn-something-something-v1/"):  # fmt: skip
        assert where in out, where
