"""The `csv` source for a site's own films: patients, views, splits, several films per study,
CheXpert label columns with or without reports, and errors that name the file, the line and the fix."""

import pytest

from cxreport.cli import main
from cxreport.data.sources import describe_source, list_sources, load_source
from cxreport.errors import InputError
from tests.fixtures.iu_tree import write_random_png


def _site(tmp_path, text: str, films=("a.png", "b.png", "c.png", "d.png")):
    for f in films:
        write_random_png(tmp_path / "images" / f)
    (tmp_path / "studies.csv").write_text(text)
    return tmp_path / "studies.csv"


def test_several_films_per_study_with_views_and_patients(tmp_path):
    csv = _site(tmp_path, "id,image,patient_id,view,text\n"
                          "s1,a.png,p1,PA,The heart is enlarged.\n"
                          "s1,b.png,p1,LATERAL,\n"
                          "s2,c.png,p2,,Clear lungs.\n"
                          "s3,missing.png,p2,AP,No effusion.\n")
    st = {s.study_id: s for s in load_source("csv", csv)}
    assert [p.rsplit("/", 1)[1] for p in st["s1"].image_paths] == ["a.png", "b.png"]
    assert st["s1"].views == ["PA", "LATERAL"] and st["s1"].findings == "The heart is enlarged."
    assert st["s2"].views == ["UNKNOWN"] and st["s3"].image_paths == [] and st["s3"].extra["missing_images"] == 1
    assert st["s1"].patient_id == "p1" and st["s2"].split == st["s3"].split  # one patient, one split


def test_seeded_split_keeps_each_patient_in_one_split(tmp_path):
    rows = [f"s{p}_{k},p{p},Clear lungs." for p in range(60) for k in range(3)]
    csv = _site(tmp_path, "id,patient_id,text\n" + "\n".join(rows) + "\n", films=())
    studies = load_source("csv", csv, allow_empty="true", val="0.3", test="0.3")  # -o values arrive as text
    by_patient = {}
    for s in studies:
        by_patient.setdefault(s.patient_id, set()).add(s.split)
    assert all(len(v) == 1 for v in by_patient.values())
    assert {"train", "val", "test"} == {s.split for s in studies}


def test_split_column_and_its_errors(tmp_path):
    csv = _site(tmp_path, "id,text,split\na,One.,Validate\nb,Two.,\nc,Three.,test\n")
    st = {s.study_id: s.split for s in load_source("csv", csv)}
    assert st["a"] == "val" and st["c"] == "test" and st["b"] in ("train", "val", "test")
    csv.write_text("id,text,split\na,One.,holdout\n")
    with pytest.raises(InputError, match=r"studies.csv: line 2: split 'holdout'; use train, val or test"):
        load_source("csv", csv)


def test_label_columns_with_and_without_reports(tmp_path):
    csv = _site(tmp_path, "id,image,cardiomegaly,Pleural_Effusion,No Finding\n"
                          "s1,a.png,1,-1.0,\n"
                          "s1,b.png,,,\n"
                          "s2,c.png,0,0,1\n")
    st = {s.study_id: s for s in load_source("csv", csv)}  # labels alone: no text column needed
    assert st["s1"].labels == {"Cardiomegaly": 1, "Pleural Effusion": -1} and st["s1"].findings == ""
    assert st["s2"].labels == {"Cardiomegaly": 0, "Pleural Effusion": 0, "No Finding": 1}
    csv.write_text("id,image,text,Cardiomegaly\ns1,a.png,The heart is enlarged.,0\n")
    assert load_source("csv", csv)[0].labels == {"Cardiomegaly": 0}
    assert load_source("csv", csv, labels="none")[0].labels == {}  # the labeler will read the report
    csv.write_text("id,image,Edema\ns1,a.png,yes\n")
    with pytest.raises(InputError, match=r"studies.csv: line 2: column 'Edema' has 'yes'; a label is 1"):
        load_source("csv", csv)
    csv.write_text("id,image,note\ns1,a.png,x\n")
    with pytest.raises(InputError, match=r"no report column 'text' and no CheXpert label columns.*-o text_column"):
        load_source("csv", csv)


def test_rows_of_one_study_must_agree(tmp_path):
    csv = _site(tmp_path, "id,image,patient_id,text\ns1,a.png,p1,Clear.\ns1,b.png,p1,Effusion.\n")
    with pytest.raises(InputError, match=r"line 3: study 's1' has report 'Effusion.', but line 2 gave 'Clear.'"):
        load_source("csv", csv)
    csv.write_text("id,text\na,One.\na,Two.\n")
    with pytest.raises(InputError, match=r"line 3: duplicate id 'a'; for several films per study add an 'image'"):
        load_source("csv", csv)
    csv.write_text("id,patient_id,text\na,,One.\n")
    with pytest.raises(InputError, match=r"line 2 has an empty 'patient_id'"):
        load_source("csv", csv)


def test_csv_labels_win_over_the_labeler(tmp_path):
    from cxreport.data.cache import prepare_cache
    from cxreport.data.dataset import StudyDataset
    from cxreport.labels import CHEXPERT_LABELS
    from cxreport.text.labeler import label_reports

    csv = _site(tmp_path, "id,image,split,text,Cardiomegaly\n"
                          "s1,a.png,train,The heart is enlarged.,0\n"
                          "s2,c.png,train,The heart is enlarged.,\n")
    cache = prepare_cache("csv", csv, tmp_path / "cache", size=32, workers=1)
    ds = StudyDataset(cache, "train", label_fn=label_reports)
    j = CHEXPERT_LABELS.index("Cardiomegaly")
    by_id = {r["study_id"]: ds.labels[i][j] for i, r in enumerate(ds.rows)}
    assert by_id == {"s1": 0.0, "s2": 1.0}  # the CSV's 0 stands; the unlabelled study is read from its report


def test_options_are_checked_converted_and_explained(tmp_path, capsys):
    csv = _site(tmp_path, "id,text\na,One.\n")
    with pytest.raises(InputError, match=r"source csv: unknown option\(s\) text_col; its options are: csv_file"):
        load_source("csv", csv, text_col="report")
    with pytest.raises(InputError, match=r"option seed='x': expected int"):
        load_source("csv", csv, seed="x")
    for name in list_sources():
        assert all(text for _, _, text in describe_source(name)["options"]), name  # every option explained
    assert main(["data", "sources"]) == 0
    out = capsys.readouterr().out
    assert "patient_column (default 'patient_id'):" in out and "kermany:" in out
    assert main(["data", "sources", "csv"]) == 0
    assert "Pleural_Effusion" in capsys.readouterr().out
