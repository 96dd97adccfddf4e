import json

import pytest

from cxreport.data.sources import list_sources, load_source
from cxreport.data.study import normalise_ws
from cxreport.errors import InputError
from tests.fixtures.iu_tree import make_iu_kaggle, write_random_png


def test_registry_lists_every_adapter():
    assert {"iu-xray", "iu-xray-openi", "r2gen", "csv", "nih-cxr14", "kermany"} <= set(list_sources())
    with pytest.raises(InputError, match="unknown source"):
        load_source("nope", ".")


def test_iu_kaggle_synthetic(tmp_path):
    make_iu_kaggle(tmp_path)
    st = {s.study_id: s for s in load_source("iu-xray", tmp_path)}
    assert st["1"].views == ["FRONTAL", "LATERAL"]  # frontal first whatever the file order
    assert st["1"].findings == "The lungs are clear. No effusion."
    assert st["2"].image_paths == [] and st["2"].extra["missing_images"] == 1  # text-only study kept
    assert st["2"].findings == "" and st["2"].impression == "Mild cardiomegaly."
    assert all(s.split in ("train", "val", "test") for s in st.values())


def test_wrong_columns_name_file_and_columns(tmp_path):
    make_iu_kaggle(tmp_path)
    (tmp_path / "indiana_reports.csv").write_text("uid,report\n1,x\n")
    with pytest.raises(InputError, match=r"indiana_reports.csv: missing column\(s\).*found columns \[uid, report\]"):
        load_source("iu-xray", tmp_path)
    with pytest.raises(InputError, match="folder not found"):
        load_source("iu-xray", tmp_path / "nowhere")


def test_csv_source(tmp_path):
    (tmp_path / "images").mkdir()
    write_random_png(tmp_path / "images" / "a.png")
    write_random_png(tmp_path / "images" / "b.jpg")
    (tmp_path / "reports.csv").write_text("id,text\na.png,Clear lungs.\nb,Small effusion.\nc,No image.\n")
    st = {s.study_id: s for s in load_source("csv", tmp_path)}
    assert st["b"].image_paths[0].endswith("b.jpg") and st["c"].image_paths == []
    again = {s.study_id: s.split for s in load_source("csv", tmp_path)}
    assert again == {k: s.split for k, s in st.items()}  # seeded, stable
    (tmp_path / "reports.csv").write_text("id,text\na.png,\n")
    with pytest.raises(InputError, match=r"reports.csv: line 2 \(a.png\) has an empty 'text'"):
        load_source("csv", tmp_path)
    (tmp_path / "reports.csv").write_text("image,caption\na.png,x\n")
    with pytest.raises(InputError, match="missing column"):
        load_source("csv", tmp_path)


def test_r2gen_synthetic(tmp_path):
    ann = {"train": [{"id": "CXR1_1_IM-0001", "report": "Clear.", "image_path": ["CXR1_1_IM-0001/0.png"],
                      "split": "train"}], "val": [], "test": []}
    (tmp_path / "annotation.json").write_text(json.dumps(ann))
    write_random_png(tmp_path / "images" / "CXR1_1_IM-0001" / "0.png")
    (s,) = load_source("r2gen", tmp_path)
    assert s.patient_id == "1" and s.split == "train" and len(s.image_paths) == 1


@pytest.mark.shared
def test_iu_kaggle_real_counts(shared_data):
    st = load_source("iu-xray", shared_data / "iu_xray")
    assert len(st) == 3261
    assert sum(s.split == "val" for s in st) == 296
    assert sum(len(s.image_paths) for s in st) == 22
    assert sum(bool(s.extra["r2gen_id"]) for s in st) == 2069 + 296


@pytest.mark.shared
def test_openi_xml_matches_kaggle_for_every_shared_study(shared_data):
    """The XML adapter and the Kaggle adapter must give the same texts for every common study."""
    xml = {s.study_id: s for s in load_source("iu-xray-openi", shared_data / "iu_xray" / "openi")}
    kag = {s.study_id: s for s in load_source("iu-xray", shared_data / "iu_xray")}
    assert len(xml) == 3365
    common = set(xml) & set(kag)
    assert len(common) == 3261
    diffs = [u for u in common if (normalise_ws(xml[u].findings), normalise_ws(xml[u].impression))
             != (normalise_ws(kag[u].findings), normalise_ws(kag[u].impression))]
    assert diffs == []
    assert all(xml[u].split == kag[u].split for u in common)
    # MeSH major terms are the Kaggle MeSH column (which has stray spaces around some terms).
    assert all(xml[u].extra["mesh_major"] == [normalise_ws(t) for t in kag[u].extra["mesh"].split(";")]
               for u in common)


@pytest.mark.shared
def test_r2gen_real_matches_kaggle_findings(shared_data):
    r2 = load_source("r2gen", shared_data / "iu_xray")
    kag = {s.study_id: s for s in load_source("iu-xray", shared_data / "iu_xray")}
    assert len(r2) == 2069 + 296
    assert all(s.findings == kag[s.patient_id].findings for s in r2)


@pytest.mark.shared
def test_nih_and_kermany_real(shared_data):
    nih = load_source("nih-cxr14", shared_data / "nih_cxr14")
    assert len(nih) == 1610 and sum(s.split == "test" for s in nih) == 824
    assert sum(s.labels["Pleural Effusion"] for s in nih) == 171
    assert sum(s.labels["No Finding"] for s in nih) == 603
    ker = load_source("kermany", shared_data / "kermany_pediatric_cxr")
    assert len(ker) == 5808 and sum(s.labels.get("Pneumonia", 0) for s in ker) == 4237
    by_patient = {}
    for s in ker:
        by_patient.setdefault(s.patient_id, set()).add(s.split)
    assert all(len(v) == 1 for v in by_patient.values())  # no patient in two splits
