"""Each database adapter on a miniature copy of its official layout, traps included."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from dffr.datasets import DATASETS, DatasetError, get_dataset
from dffr.datasets.adapters.celebdf import identities


def by_video(items):
    return {i.video: i for i in items}


def _ffpp(root, place, pairs):
    (root / "splits").mkdir(parents=True)
    for split, p in pairs.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(p))
    place(
        root,
        "original_sequences/youtube/c23/videos/519.mp4",
        "original_sequences/youtube/c23/videos/515.mp4",
        "original_sequences/youtube/c23/videos/974.mp4",
        "original_sequences/youtube/c40/videos/519.mp4",
        "original_sequences/youtube/c23/videos/777.mp4",  # in no official list
        "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4",
        "manipulated_sequences/FaceSwap/c23/videos/974_953.mp4",
        "manipulated_sequences/Face2Face/c23/videos/515_519.mp4",
        "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walk__ABC.mp4",
        "manipulated_sequences/DeepFakeDetection/c23/videos/03_01__talk__DEF.mp4",
        "original_sequences/actors/c23/videos/01__walk.mp4",
    )


PAIRS = {"train": [["519", "515"]], "val": [["953", "974"]], "test": [["100", "200"]]}


def test_faceforensics_layout_labels_and_split_by_either_id(tmp_path, place):
    _ffpp(tmp_path, place, PAIRS)
    items = by_video(get_dataset("FaceForensics", tmp_path).items())
    o = "original_sequences/youtube/c23/videos/"
    m = "manipulated_sequences/"
    assert items[o + "519.mp4"].split == "train" and items[o + "519.mp4"].label == 0
    assert items[o + "515.mp4"].split == "train"  # 515 is the pair's second id
    assert items[o + "974.mp4"].split == "val"  # ... and so is 974
    assert items[m + "FaceSwap/c23/videos/974_953.mp4"].split == "val"
    assert items[m + "Face2Face/c23/videos/515_519.mp4"].split == "train"
    fake = items[m + "Deepfakes/c23/videos/519_515.mp4"]
    assert (fake.label, fake.method, fake.split) == (1, "Deepfakes", "train")
    assert o + "777.mp4" not in items  # not in any official list
    assert not any("/c40/" in v for v in items)
    assert fake.identities == ("yt519", "yt515")
    # the paper's four methods by default, whatever else is on disk
    assert {i.method for i in items.values()} == {"real", "Deepfakes", "FaceSwap", "Face2Face"}
    assert not any("DeepFakeDetection" in v or "actors" in v for v in items)
    # DeepFakeDetection and the actors when asked for: split by actor, identity-disjoint
    ds = get_dataset("FaceForensics", tmp_path, methods="Deepfakes,DeepFakeDetection")
    items = by_video(ds.items())
    assert ds.options()["methods"] == ["Deepfakes", "DeepFakeDetection"]
    dfd = [i for i in items.values() if "actors" in i.video or "DeepFakeDetection" in i.video]
    assert len(dfd) == 3 and {i.method for i in dfd} == {"DeepFakeDetection", "real"}
    assert items["original_sequences/actors/c23/videos/01__walk.mp4"].split == (
        items[m + "DeepFakeDetection/c23/videos/01_02__walk__ABC.mp4"].split
    )


def test_faceforensics_options_and_missing_splits(tmp_path, place):
    _ffpp(tmp_path, place, PAIRS)
    c40 = get_dataset("FaceForensics", tmp_path, compression="c40").items()
    assert [i.video for i in c40] == ["original_sequences/youtube/c40/videos/519.mp4"]
    only = get_dataset("FaceForensics", tmp_path, methods="Deepfakes").items()
    assert {i.method for i in only} == {"real", "Deepfakes"}
    # the same methods in any order are the same options (a cache compares them)
    swapped = get_dataset("FaceForensics", tmp_path, methods="FaceSwap,Deepfakes")
    assert swapped.options()["methods"] == ["Deepfakes", "FaceSwap"]
    assert swapped.options()["splits"] == "<root>/splits"  # the root may move
    with pytest.raises(DatasetError, match="unknown method"):
        get_dataset("FaceForensics", tmp_path, methods="Deepfake")
    with pytest.raises(DatasetError, match="unknown compression"):
        get_dataset("FaceForensics", tmp_path, compression="c30")
    other = tmp_path / "my_splits"
    (tmp_path / "splits").rename(other)
    with pytest.raises(DatasetError, match="--splits DIR"):
        get_dataset("FaceForensics", tmp_path)
    assert get_dataset("FaceForensics", tmp_path, splits=other).items()


def test_celebdf_official_protocol_and_the_disjoint_option(tmp_path, place):
    test_list = [
        "1 Celeb-real/id0_0001.mp4",
        "0 Celeb-synthesis/id0_id1_0001.mp4",
        "1 YouTube-real/00001.mp4",
        "",
    ]
    (tmp_path / "List_of_testing_videos.txt").write_text("\n".join(test_list))
    names = [
        "Celeb-real/id0_0001.mp4",
        "Celeb-real/id0_0002.mp4",
        "Celeb-synthesis/id0_id1_0001.mp4",
        "Celeb-synthesis/id2_id3_0004.mp4",
        "YouTube-real/00001.mp4",
        "YouTube-real/00002.mp4",
    ]
    names += [f"Celeb-real/id{i}_000{k}.mp4" for i in range(2, 40) for k in range(2)]
    names += [f"Celeb-synthesis/id{i}_id{i + 1}_0000.mp4" for i in range(2, 40)]
    place(tmp_path, *names)
    for protocol in ("official", "disjoint"):
        ds = get_dataset("CelebDF", tmp_path, protocol=protocol)
        items = by_video(ds.items())
        assert ds.options() == {"protocol": protocol}
        # 1 = real in the official file, 1 = fake here
        assert items["Celeb-real/id0_0001.mp4"].label == 0
        assert items["Celeb-synthesis/id0_id1_0001.mp4"].label == 1
        assert items["Celeb-synthesis/id0_id1_0001.mp4"].split == "test"
        assert items["YouTube-real/00001.mp4"].split == "test"
        assert {i.video for i in items.values() if i.split == "test"} == {
            t.split()[1] for t in test_list if t
        }
        ids = defaultdict(set)
        for it in items.values():
            ids[it.split] |= set(identities(it.video))
        assert ids["train"] and ids["val"]
        if protocol == "official":
            # everything not listed is trained on: nothing dropped, fakes included
            assert set(items) == set(names) and not ds.excluded
            assert items["Celeb-real/id0_0002.mp4"].split in ("train", "val")
            fakes = [i for i in items.values() if i.split == "train" and i.label == 1]
            assert len(fakes) > 25
            # val: videos whose identities are all validation identities
            val_ids = {i for v in items.values() if v.split == "val" for i in v.identities}
            for it in items.values():
                if it.split == "train":
                    assert not set(it.identities) <= val_ids
        else:
            assert not ids["train"] & ids["val"]
            assert not (ids["train"] | ids["val"]) & ids["test"]
            assert "Celeb-real/id0_0002.mp4" in ds.excluded
    assert get_dataset("CelebDF", tmp_path).protocol == "official"  # the default
    with pytest.raises(DatasetError, match="protocol must be one of official, disjoint"):
        get_dataset("CelebDF", tmp_path, protocol="rest")


def test_dfdc_missing_videos_and_fakes_with_their_originals(tmp_path, place):
    meta = {}
    for k in range(30):
        meta[f"real{k}.mp4"] = {"label": "REAL", "split": "train"}
        meta[f"fake{k}a.mp4"] = {"label": "FAKE", "split": "train", "original": f"real{k}.mp4"}
        meta[f"fake{k}b.mp4"] = {"label": "FAKE", "split": "train", "original": f"real{k}.mp4"}
    part = tmp_path / "dfdc_train_part_0"
    part.mkdir()
    (part / "metadata.json").write_text(json.dumps(meta))
    place(tmp_path, *[f"dfdc_train_part_0/{n}" for n in list(meta)[:-1]])  # last one missing
    items = by_video(get_dataset("DFDC", tmp_path).items())
    assert len(items) == 90  # the missing video is still an item
    missing = items["dfdc_train_part_0/fake29b.mp4"]
    assert missing.listed_in == "dfdc_train_part_0/metadata.json"
    for k in range(30):
        splits = {
            items[f"dfdc_train_part_0/{n}"].split
            for n in (f"real{k}.mp4", f"fake{k}a.mp4", f"fake{k}b.mp4")
        }
        assert len(splits) == 1
    assert {i.split for i in items.values()} == {"train", "val", "test"}
    assert items["dfdc_train_part_0/fake3a.mp4"].label == 1
    # with the public test set, it is the test split
    (tmp_path / "test_videos").mkdir()
    (tmp_path / "labels.csv").write_text("filename,label\naaa.mp4,1\nbbb.mp4,0\n")
    items = by_video(get_dataset("DFDC", tmp_path).items())
    assert items["test_videos/aaa.mp4"].label == 1 and items["test_videos/bbb.mp4"].label == 0
    assert {i.video for i in items.values() if i.split == "test"} == {
        "test_videos/aaa.mp4",
        "test_videos/bbb.mp4",
    }


def test_uadfv_pairs_stay_together(tmp_path, place):
    place(
        tmp_path,
        *[f"real/{k:04d}.mp4" for k in range(49)],
        *[f"fake/{k:04d}_fake.mp4" for k in range(49)],
    )
    items = by_video(get_dataset("UADFV", tmp_path).items())
    assert len(items) == 98
    for k in range(49):
        real, fake = items[f"real/{k:04d}.mp4"], items[f"fake/{k:04d}_fake.mp4"]
        assert real.split == fake.split and (real.label, fake.label) == (0, 1)
    test_share = sum(i.split == "test" for i in items.values()) / 98
    assert 0.08 < test_share < 0.35


def test_folder_layouts(tmp_path, place):
    place(
        tmp_path / "a",
        "real/x1.mp4",
        "real/x2.png",
        "fake/fwa/x1.mp4",
        "fake/y.mp4",
        "fake/notes.txt",
    )
    items = by_video(get_dataset("folder", tmp_path / "a").items())
    assert set(items) == {"real/x1.mp4", "real/x2.png", "fake/fwa/x1.mp4", "fake/y.mp4"}
    assert items["fake/fwa/x1.mp4"].method == "fwa" and items["fake/y.mp4"].method == "fake"
    grouped = by_video(get_dataset("folder", tmp_path / "a", group=r"^x\d").items())
    assert grouped["real/x1.mp4"].split == grouped["fake/fwa/x1.mp4"].split
    place(tmp_path / "b", "train/real/a.png", "test/fake/b.png", "val/fake/c.png")
    items = by_video(get_dataset("folder", tmp_path / "b").items())
    assert items["train/real/a.png"].split == "train" and items["test/fake/b.png"].label == 1
    with pytest.raises(DatasetError, match="no images or videos"):
        get_dataset("folder", tmp_path / "a" / "real").items()


def test_registry_and_bad_roots(tmp_path):
    assert set(DATASETS.names()) == {"CelebDF", "DFDC", "FaceForensics", "UADFV", "folder"}
    with pytest.raises(DatasetError, match="does not exist"):
        get_dataset("UADFV", tmp_path / "nope")
    with pytest.raises(DatasetError, match="official test list"):
        get_dataset("CelebDF", tmp_path)
    with pytest.raises(DatasetError, match="UADFV has no option 'methods' \\(its options: none"):
        get_dataset("UADFV", tmp_path, methods="x")
