"""The mimic-cxr adapter, end to end on a miniature MIMIC-CXR-JPG tree."""

import gzip
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from cxreport.data.sources import list_sources, load_source
from cxreport.data.sources.mimic_cxr import load
from cxreport.errors import InputError
from tests.fixtures.mimic_tree import build_mimic_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_mimic_tree(tmp_path_factory.mktemp("mimic"), n_subjects=3)


@pytest.fixture(scope="module")
def studies(tree):
    return {s.study_id: s for s in load(tree["root"])}


def _rewrite_csv(path: Path, header: str, rows: list[str]) -> None:
    path.write_bytes(gzip.compress(("\n".join([header, *rows]) + "\n").encode()))


def test_registered_and_loadable_through_the_registry(tree):
    assert "mimic-cxr" in list_sources()
    via_registry = load_source("mimic-cxr", tree["root"])
    assert [s.study_id for s in via_registry] == sorted(tree["studies"], key=lambda s: (tree["studies"][s]["subject_id"], s))


def test_one_row_per_study_with_ids_and_mapped_splits(tree, studies):
    assert set(studies) == set(tree["studies"]) and len(studies) == tree["n_studies"]
    for sid, facts in tree["studies"].items():
        s = studies[sid]
        assert s.source == "mimic-cxr"
        assert s.patient_id == str(facts["subject_id"])
        assert s.split == facts["split_mapped"]
        assert s.extra["StudyDate"] == facts["study_date"]
    assert {s.split for s in studies.values()} == {"train", "val", "test"}
    json.dumps([s.to_dict() for s in studies.values()])  # cacheable as JSON


def test_images_exist_and_are_ordered_pa_first(tree, studies):
    for sid, facts in tree["studies"].items():
        s = studies[sid]
        assert s.extra["dicom_ids"] == facts["expected_order"]
        present = [d for d in facts["expected_order"] if d not in facts["missing"]]
        assert [Path(p).stem for p in s.image_paths] == present
        assert len(s.views) == len(s.image_paths)
        for path, dicom in zip(s.image_paths, present):
            assert Path(path).is_absolute()
            with Image.open(path) as im:
                assert im.size == facts["image_sizes"][dicom] and im.mode == "L"
    mixed = [s for s in studies.values() if sorted(s.views) == ["AP", "LL", "PA"]]
    assert mixed and all(s.views == ["PA", "AP", "LL"] for s in mixed)
    assert any(s.views == ["PA", "LATERAL"] for s in studies.values())
    assert any(s.views == ["UNKNOWN"] for s in studies.values())  # empty ViewPosition


def test_missing_image_is_reported_and_study_kept(tree, caplog):
    with caplog.at_level(logging.WARNING, logger="cxreport.data.sources.mimic_cxr"):
        got = {s.study_id: s for s in load(tree["root"])}
    s = got[tree["missing_image_study"]]
    assert s.image_paths == [] and s.views == []
    assert s.extra["missing_dicom_ids"] == tree["studies"][s.study_id]["missing"]
    assert s.impression  # its text is still usable
    assert f"{tree['n_missing_images']} of {tree['n_images']} image files" in caplog.text

    kept = {s.study_id for s in load(tree["root"], require_images=True)}
    assert kept == set(got) - {tree["missing_image_study"]}


def test_labels_chexpert_with_uncertain_and_blank(tree, studies):
    pinned = studies[tree["pinned_label_study"]].labels
    assert pinned["Cardiomegaly"] == -1 and pinned["No Finding"] == 1 and pinned["Pneumonia"] == 0
    assert "Edema" not in pinned  # blank = not mentioned
    assert studies[tree["unlabelled_study"]].labels == {}
    values = {"1.0": 1, "0.0": 0, "-1.0": -1}
    for sid, facts in tree["studies"].items():
        expected = {k: values[v] for k, v in (facts["chexpert"] or {}).items() if v}
        assert studies[sid].labels == expected


def test_labels_negbio_and_none(tree):
    values = {"1.0": 1, "0.0": 0, "-1.0": -1}
    negbio = {s.study_id: s for s in load(tree["root"], labels="negbio")}
    for sid, facts in tree["studies"].items():
        assert negbio[sid].labels == {k: values[v] for k, v in (facts["negbio"] or {}).items() if v}
    assert all(s.labels == {} for s in load(tree["root"], labels=None))


def test_report_sections(tree, studies):
    for sid, facts in tree["studies"].items():
        s = studies[sid]
        assert s.findings == facts["findings"], sid
        assert s.impression == facts["impression"], sid
        assert s.extra["last_paragraph"] == facts["last_paragraph"], sid
    no_report = studies[tree["no_report_study"]]
    assert (no_report.findings, no_report.impression, no_report.indication, no_report.comparison) == ("",) * 4
    assert no_report.extra["has_report"] is False
    some = next(s for s in studies.values() if s.findings.startswith("The lungs are clear"))
    assert some.indication == "___F with cough and fever // eval for pneumonia" and some.comparison == "None."
    assert any(s.extra["last_paragraph"] and not s.findings and not s.impression for s in studies.values())


def test_reports_in_a_separate_root_and_plain_csvs(tmp_path):
    facts = build_mimic_tree(tmp_path / "jpg", n_subjects=2, reports_root=tmp_path / "reports", gz=False)
    assert facts["csv"]["split"].suffix == ".csv"
    without = load(facts["root"])
    assert all(s.findings == s.impression == "" for s in without)
    for reports_root in (tmp_path / "reports", tmp_path / "reports" / "files"):
        got = {s.study_id: s for s in load(facts["root"], reports_root=reports_root)}
        assert all(got[sid].impression == f["impression"] for sid, f in facts["studies"].items())
    with pytest.raises(InputError, match="reports_root"):
        load(facts["root"], reports_root=tmp_path / "nowhere")


def test_tree_without_reports(tmp_path):
    facts = build_mimic_tree(tmp_path, n_subjects=1, with_reports=False)
    assert facts["no_report_study"] is None
    assert all(not s.extra["has_report"] for s in load(tmp_path))
    assert (tmp_path / "SHA256SUMS.txt").read_text().count("\n") == len(facts["files"]) - 1


@pytest.fixture
def small(tmp_path):
    return build_mimic_tree(tmp_path, n_subjects=1)


def test_missing_required_csv_names_the_file(small):
    small["csv"]["metadata"].unlink()
    with pytest.raises(InputError, match=r"mimic-cxr-2\.0\.0-metadata\.csv"):
        load(small["root"])


def test_missing_optional_label_csv_only_warns(small, caplog):
    small["csv"]["chexpert"].unlink()
    with caplog.at_level(logging.WARNING):
        got = load(small["root"])
    assert got and all(s.labels == {} for s in got)
    assert "chexpert" in caplog.text


def test_wrong_columns_name_file_found_and_expected(small):
    _rewrite_csv(small["csv"]["split"], "dicom_id,study,subject_id,split", ["a,1,2,train"])
    with pytest.raises(InputError) as err:
        load(small["root"])
    msg = str(err.value)
    assert "mimic-cxr-2.0.0-split.csv.gz" in msg and "study_id" in msg and "found columns [dicom_id, study, subject_id, split]" in msg


def test_wrong_label_columns(small):
    _rewrite_csv(small["csv"]["negbio"], "subject_id,study_id,Atelectasis", ["10000032,50000000,1.0"])
    with pytest.raises(InputError, match="negbio.*Cardiomegaly"):
        load(small["root"], labels="negbio")


def test_bad_values_and_options(small):
    with pytest.raises(InputError, match="labels="):
        load(small["root"], labels="chexbert")
    with pytest.raises(InputError, match="not a folder"):
        load(small["root"] / "nope")
    split = small["csv"]["split"]
    text = gzip.decompress(split.read_bytes()).decode()
    split.write_bytes(gzip.compress(text.replace(",train\n", ",training\n", 1).encode()))
    with pytest.raises(InputError, match="unknown split 'training'"):
        load(small["root"])


def test_header_only_split_csv(small):
    _rewrite_csv(small["csv"]["split"], "dicom_id,study_id,subject_id,split", [])
    with pytest.raises(InputError, match="split.csv.gz: no rows"):
        load(small["root"])


def test_corrupt_gzip_is_an_input_error(small):
    small["csv"]["metadata"].write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(InputError, match="metadata.*cannot read"):
        load(small["root"])


def test_no_images_at_all_with_require_images(tmp_path):
    facts = build_mimic_tree(tmp_path, n_subjects=1)
    for p in (tmp_path / "files").rglob("*.jpg"):
        p.unlink()
    assert len(load(tmp_path)) == facts["n_studies"]
    with pytest.raises(InputError, match="no image files"):
        load(tmp_path, require_images=True)
