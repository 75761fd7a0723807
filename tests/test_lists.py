"""List files: the VideoMAE format, and the builders from each dataset's official annotation files."""

from __future__ import annotations

import json

import pytest

from mme.cli import main as cli_main
from mme.data.lists import (
    ListEntry,
    build_lists,
    from_class_folders,
    from_hmdb51,
    from_kinetics,
    from_ssv2,
    from_ucf101,
    read_list,
    resolve,
    write_list,
)
from mme.errors import DataError


def test_read_labelled_unlabelled_and_spaces(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("a/x.mp4 3\n\n# comment\nmy videos/b c.mp4 0\n")
    entries, bad = read_list(f)
    assert entries == [ListEntry("a/x.mp4", 3), ListEntry("my videos/b c.mp4", 0)] and bad == []
    f.write_text("a/x.mp4\nmy videos/b c.mp4\n")
    assert read_list(f)[0] == [ListEntry("a/x.mp4"), ListEntry("my videos/b c.mp4")]
    assert resolve(ListEntry("a/x.mp4"), "/data") == "/data/a/x.mp4"
    assert resolve(ListEntry("/abs/x.mp4"), "/data") == "/abs/x.mp4"


def test_bad_label_names_file_and_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("a.mp4 1\nb.mp4 cat\nc.mp4 -2\nd.mp4 0\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: bad label 'cat'"):
        read_list(f)
    entries, bad = read_list(f, strict=False)
    assert [e.path for e in entries] == ["a.mp4", "d.mp4"]
    assert [(b.line_no, b.reason) for b in bad] == [(2, "bad label 'cat' (expected a class id >= 0)"),
                                                   (3, "negative label -2")]
    with pytest.raises(DataError, match="cannot read"):
        read_list(tmp_path / "nope.txt")


def test_write_read_round_trip(tmp_path):
    entries = [ListEntry("a b.mp4", 2), ListEntry("c.mp4", 0)]
    write_list(tmp_path / "o.txt", entries)
    assert (tmp_path / "o.txt").read_text() == "a b.mp4 2\nc.mp4 0\n"
    assert read_list(tmp_path / "o.txt")[0] == entries


def test_class_folders(tmp_path):
    for rel in ("walk/v1.avi", "walk/v2.mp4", "jump/sub/v3.webm", "jump/readme.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    splits, classes = from_class_folders(tmp_path)
    assert classes == ["jump", "walk"]
    assert splits["all"] == [ListEntry("jump/sub/v3.webm", 0), ListEntry("walk/v1.avi", 1),
                             ListEntry("walk/v2.mp4", 1)]


def test_ucf101_official_splits(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    (tmp_path / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g25_c05.avi 3\n")
    (tmp_path / "testlist01.txt").write_text(
        "HandStandPushups/v_HandStandPushups_g01_c01.avi\r\nYoYo/v_YoYo_g01_c01.avi\n")
    splits, classes = from_ucf101(tmp_path, 1)
    assert classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert splits["train"] == [ListEntry("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
                               ListEntry("YoYo/v_YoYo_g25_c05.avi", 2)]
    assert splits["test"] == [ListEntry("HandStandPushups/v_HandStandPushups_g01_c01.avi", 1),
                              ListEntry("YoYo/v_YoYo_g01_c01.avi", 2)]
    with pytest.raises(DataError, match="trainlist02"):
        from_ucf101(tmp_path, 2)


def test_hmdb51_official_splits(tmp_path):
    (tmp_path / "brush_hair_test_split1.txt").write_text("April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
                                                         "Blonde_brush_hair_f_nm_np2_le_goo_1.avi 2 \n"
                                                         "Other_brush_hair_u_nm_np1_fr_med_2.avi 0 \n")
    (tmp_path / "cartwheel_test_split1.txt").write_text("cart_a.avi 2 \n")
    (tmp_path / "cartwheel_test_split2.txt").write_text("cart_a.avi 1 \n")
    splits, classes = from_hmdb51(tmp_path, 1)
    assert classes == ["brush_hair", "cartwheel"]
    assert splits["train"] == [ListEntry("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0)]
    assert splits["test"] == [ListEntry("brush_hair/Blonde_brush_hair_f_nm_np2_le_goo_1.avi", 0),
                              ListEntry("cartwheel/cart_a.avi", 1)]


def test_kinetics_csv_layouts(tmp_path):
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                        "abseiling,---QUuC4vJs,3,13,train\n"
                                        '"passing American football (in game)",-0B5v6tPoWY,14,24,train\n')
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nabseiling,0wR5jVB-WPk,417,427,val\n")
    splits, classes = from_kinetics([tmp_path / "train.csv", tmp_path / "val.csv"])
    assert classes == ["abseiling", "passing American football (in game)"]
    assert splits["train"] == [
        ListEntry("train/abseiling/---QUuC4vJs_000003_000013.mp4", 0),
        ListEntry("train/passing American football (in game)/-0B5v6tPoWY_000014_000024.mp4", 1)]
    assert splits["val"] == [ListEntry("val/abseiling/0wR5jVB-WPk_000417_000427.mp4", 0)]
    flat, _ = from_kinetics([tmp_path / "val.csv"], "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4")
    assert flat["val"] == [ListEntry("0wR5jVB-WPk_000417_000427.mp4", 0)]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="bad.csv: not a Kinetics CSV"):
        from_kinetics([tmp_path / "bad.csv"])


def test_ssv2_json(tmp_path):
    labels = {"Approaching something with your camera": "0", "Putting something on something": "1"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps([
        {"id": "78687", "label": "putting a cup on a table", "template": "Putting [something] on [something]",
         "placeholders": ["a cup", "a table"]},
        {"id": "42326", "label": "approaching a pen", "template": "Approaching [something] with your camera",
         "placeholders": ["a pen"]}]))
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps([
        {"id": "74225", "template": "Putting [something] on [something]"}]))
    (tmp_path / "something-something-v2-test.json").write_text(json.dumps([{"id": "1420"}]))
    splits, classes = from_ssv2(tmp_path)
    assert classes == list(labels)
    assert splits == {"train": [ListEntry("78687.webm", 1), ListEntry("42326.webm", 0)],
                      "val": [ListEntry("74225.webm", 1)], "test": [ListEntry("1420.webm")]}


def test_cli_writes_lists_and_label_map(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 A\n2 B\n")
    (tmp_path / "trainlist01.txt").write_text("A/a1.avi 1\nB/b1.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("B/b2.avi\n")
    (tmp_path / "videos" / "A").mkdir(parents=True)
    (tmp_path / "videos" / "A" / "a1.avi").write_bytes(b"x")
    out = tmp_path / "lists"
    assert cli_main(["lists", "ucf101", str(tmp_path), "--out", str(out)]) == 0
    assert (out / "train.txt").read_text() == "A/a1.avi 0\nB/b1.avi 1\n"
    assert (out / "test.txt").read_text() == "B/b2.avi 1\n"
    assert json.loads((out / "classes.json").read_text()) == ["A", "B"]
    written = build_lists("ucf101", tmp_path, out, video_root=tmp_path / "videos", skip_missing=True)
    assert written["train"].read_text() == "A/a1.avi 0\n" and written["test"].read_text() == ""
    assert cli_main(["lists", "ssv2", str(tmp_path / "nothing"), "--out", str(out)]) == 1
