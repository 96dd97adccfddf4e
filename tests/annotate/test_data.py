"""Region-annotation files: any file with the published keys, every split (problem 7 of issue 17)."""

from __future__ import annotations

import json

import pytest

from cxreport.annotate.data import load_iu_region_examples, load_region_annotations
from cxreport.errors import InputError

REGIONS = {"lung": "Lungs are clear.", "heart": "Normal heart size.", "mediastinal": "", "bone": "", "others": ""}


def _item(uid, split):
    return {"id": uid, "report": dict(REGIONS), "split": split}


@pytest.fixture
def iu_all(tmp_path):
    """An IU-like folder with the full quiz file (train/val/test) and R2Gen's full annotation.json."""
    folder = tmp_path / "iu" / "original_format"
    folder.mkdir(parents=True)
    quiz = {"train": [_item("CXR1_IM-1", "train"), _item("CXR2_IM-2", "train")],
            "val": [{"id": "CXR3_IM-3", "original_report": "Heart normal.", "split": "val"}],
            "test": [_item("CXR4_IM-4", "test")]}
    (folder / "annotation_quiz_all.json").write_text(json.dumps(quiz))
    r2gen = {s: [{"id": f"CXR{i}_IM-{i}", "report": f"Report {i}. Lungs are clear. Normal heart size.", "split": s}]
             for i, s in ((1, "train"), (3, "val"), (4, "test"))}
    r2gen["train"].append({"id": "CXR2_IM-2", "report": "Report 2.", "split": "train"})
    (folder / "annotation.json").write_text(json.dumps(r2gen))
    return tmp_path / "iu"


def test_test_split_of_the_full_file(iu_all):
    ex = load_iu_region_examples(iu_all, "test")
    assert [e.id for e in ex] == ["CXR4_IM-4"] and ex[0].text.startswith("Report 4.")
    assert ex[0].regions["heart"] == "Normal heart size."


def test_every_split_and_all(iu_all):
    assert len(load_iu_region_examples(iu_all, "train")) == 2
    assert load_iu_region_examples(iu_all, "val") == []  # no 'report' object: no reference
    assert [e.id for e in load_iu_region_examples(iu_all, "all")] == ["CXR1_IM-1", "CXR2_IM-2", "CXR4_IM-4"]
    with pytest.raises(InputError, match=r"no split 'dev' \(has train, val, test; or use --split all\)"):
        load_iu_region_examples(iu_all, "dev")


def test_a_user_file_anywhere(tmp_path):
    """A held-out / user file: its own texts, or R2Gen's annotation.json beside it."""
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"heldout": [{**_item("a", "heldout"), "findings": "Lungs are clear."}]}))
    assert load_region_annotations(own, "heldout")[0].text == "Lungs are clear."
    user = tmp_path / "user" / "regions.json"
    user.parent.mkdir()
    user.write_text(json.dumps({"test": [_item("CXR9_IM-9", "test")]}))
    with pytest.raises(InputError, match=r"regions.json: 1 item\(s\) have no FINDINGS text, e.g. 'CXR9_IM-9'"):
        load_iu_region_examples(tmp_path / "nowhere", "test", annotations=user)
    (user.parent / "annotation.json").write_text(json.dumps({"test": [{"id": "CXR9_IM-9", "report": "Nine."}]}))
    assert load_iu_region_examples(tmp_path / "nowhere", "test", annotations=user)[0].text == "Nine."


@pytest.mark.parametrize("content, why", [
    ("[1, 2]", r"expected \{split: \[items\]\}"), ("{not json", "not a JSON region annotation file"),
    ('{"train": [{"report": {}}]}', "has no 'id'"), ('{"train": [{"id": "x", "report": {"liver": ""}}]}', "none of the keys"),
])
def test_bad_files_name_the_file(tmp_path, content, why):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=why):
        load_region_annotations(path, "train")


def test_missing_folder_says_what_to_give(tmp_path):
    with pytest.raises(InputError, match="annotation_quiz_all.json or annotation_quiz_trainval.json"):
        load_iu_region_examples(tmp_path, "train")
