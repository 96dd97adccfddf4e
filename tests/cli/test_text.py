import csv
import json

from cxreport.cli import main
from cxreport.labels import CHEXPERT_LABELS


def _csv(path, rows, header=("uid", "findings", "impression")):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


ROWS = [
    ("1", "The heart is enlarged. Small left pleural effusion. No pneumothorax.", "Cardiomegaly."),
    ("2", "The lungs are clear. No change in the small effusion.", ""),
    ("3", "", "Normal chest."),
    ("4", "Heart size normal. Lungs are clear.", ""),
]


def test_label_cli_end_to_end(tmp_path, capsys):
    src = _csv(tmp_path / "reports.csv", ROWS)
    out = tmp_path / "out" / "labels.csv"
    assert main(["label", str(src), "--text-column", "findings", "--id-column", "uid", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert list(rows[0]) == ["uid", *CHEXPERT_LABELS]
    assert [r["uid"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["Cardiomegaly"] == "1" and rows[0]["Pleural Effusion"] == "1" and rows[0]["Pneumothorax"] == "0"
    assert rows[0]["Fracture"] == "" and rows[0]["No Finding"] == ""
    assert rows[1]["Pleural Effusion"] == "1"
    assert all(rows[2][k] == "" for k in CHEXPERT_LABELS)  # empty text: nothing mentioned
    assert rows[3]["No Finding"] == "1" and rows[3]["Cardiomegaly"] == "0"


def test_label_cli_missing_column_lists_columns(tmp_path, capsys):
    src = _csv(tmp_path / "reports.csv", ROWS)
    rc = main(["label", str(src), "--text-column", "report", "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "'report'" in err and "uid, findings, impression" in err
    assert not (tmp_path / "x.csv").exists()
    rc = main(["label", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.csv")])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_regions_cli_end_to_end(tmp_path):
    src = _csv(tmp_path / "reports.csv", ROWS)
    out = tmp_path / "regions.jsonl"
    assert main(["regions", str(src), "--text-column", "findings", "--id-column", "uid", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["uid"] for x in lines] == ["1", "2", "3", "4"]
    assert set(lines[0]) == {"uid", "lung", "heart", "mediastinal", "bone", "others"}
    assert lines[0]["heart"] == "The heart is enlarged." and "effusion" in lines[0]["lung"]
    assert all(v == "" for k, v in lines[2].items() if k != "uid")
