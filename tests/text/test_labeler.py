import pytest

from cxreport.labels import CHEXPERT_LABELS
from cxreport.errors import InputError
from cxreport.text.labeler import get_labeler, label_report, label_reports
from cxreport.text.mesh import mesh_to_labels


def lab(text, obs):
    return label_report(text)[obs]


@pytest.mark.parametrize("text,obs,want", [
    # plain positives and negations
    ("There is a small left pleural effusion.", "Pleural Effusion", 1),
    ("No pleural effusion.", "Pleural Effusion", 0),
    ("There is no pneumothorax or effusion.", "Pneumothorax", 0),
    ("There is no pneumothorax or effusion.", "Pleural Effusion", 0),
    ("No focal consolidation, suspicious pulmonary opacity, pleural effusion, or pneumothorax.", "Pneumothorax", 0),
    ("The lungs are free of focal airspace disease.", "Lung Opacity", 0),
    ("Negative for pneumothorax.", "Pneumothorax", 0),
    ("Pneumothorax is not seen.", "Pneumothorax", 0),
    ("The previously seen pneumothorax has resolved.", "Pneumothorax", 0),
    ("Resolved left effusion.", "Pleural Effusion", 0),
    ("Interval resolution of the right lower lobe pneumonia.", "Pneumonia", 0),
    ("There is no focal airspace opacity to suggest pneumonia.", "Pneumonia", 0),
    ("Without evidence of edema.", "Edema", 0),
    # uncertainty
    ("Cannot exclude a small pneumothorax.", "Pneumothorax", -1),
    ("A small pneumothorax cannot be excluded.", "Pneumothorax", -1),
    ("Opacity may represent atelectasis or pneumonia.", "Pneumonia", -1),
    ("Opacity may represent atelectasis or pneumonia.", "Lung Opacity", 1),
    ("Effusion versus pleural thickening.", "Pleural Effusion", -1),
    ("Possible small right pleural effusion.", "Pleural Effusion", -1),
    ("Borderline cardiomegaly.", "Cardiomegaly", -1),
    ("No definite pneumonia, possible atelectasis.", "Atelectasis", -1),
    ("No definite pneumonia, possible atelectasis.", "Pneumonia", 0),
    # scope ends at clause boundaries / "but"
    ("No pneumothorax, but there is a small effusion.", "Pleural Effusion", 1),
    ("No effusion; moderate cardiomegaly.", "Cardiomegaly", 1),
    # double negation / stability
    ("No change in the small left effusion.", "Pleural Effusion", 1),
    ("No interval change in cardiomegaly.", "Cardiomegaly", 1),
    ("Unchanged cardiomegaly.", "Cardiomegaly", 1),
    ("Stable enlarged cardiomediastinal silhouette.", "Cardiomegaly", 1),
    # attribute mentions need a modifier
    ("The heart is enlarged.", "Cardiomegaly", 1),
    ("Heart size is normal.", "Cardiomegaly", 0),
    ("The heart is not enlarged.", "Cardiomegaly", 0),
    ("Negative for cardiac enlargement.", "Cardiomegaly", 0),
    ("Heart size is at the upper limits of normal.", "Cardiomegaly", 0),
    ("The mediastinum is widened.", "Enlarged Cardiomediastinum", 1),
    ("Normal cardiomediastinal silhouette.", "Enlarged Cardiomediastinum", 0),
    # devices and bones
    ("Right IJ central venous catheter with tip in the SVC.", "Support Devices", 1),
    ("Endotracheal tube has been removed.", "Support Devices", 0),
    ("Healed right rib fracture.", "Fracture", 1),
    ("No acute fracture.", "Fracture", 0),
    ("Biapical pleural thickening.", "Pleural Other", 1),
])
def test_sentences(text, obs, want):
    assert lab(text, obs) == want, label_report(text)


def test_no_interval_change_does_not_negate_other_findings():
    out = label_report("No interval change. Small right pleural effusion. Mild cardiomegaly.")
    assert out["Pleural Effusion"] == 1 and out["Cardiomegaly"] == 1


def test_no_finding_rule():
    normal = label_report("The heart is normal in size. The lungs are clear. No pneumothorax or effusion.")
    assert normal["No Finding"] == 1 and normal["Cardiomegaly"] == 0 and normal["Pleural Effusion"] == 0
    # Support Devices alone keeps No Finding
    dev = label_report("Left chest pacemaker. Lungs are clear.")
    assert dev["Support Devices"] == 1 and dev["No Finding"] == 1
    # an uncertain finding removes it
    assert label_report("Possible small effusion.")["No Finding"] is None
    # not mentioned is None, never 0
    assert label_report("Lungs are clear.")["Fracture"] is None


def test_label_reports_shape_and_empty():
    out = label_reports(["Cardiomegaly.", "", None])
    assert len(out) == 3 and all(list(d) == list(CHEXPERT_LABELS) for d in out)
    assert out[0]["Cardiomegaly"] == 1 and out[0]["No Finding"] is None
    assert all(v is None for v in out[1].values()) and all(v is None for v in out[2].values())


def test_decimal_numbers_do_not_split_sentences():
    assert lab("A 2.5 cm nodule in the right upper lobe. No effusion.", "Lung Lesion") == 1


def test_mesh_mapping():
    ref = mesh_to_labels("Cardiomegaly/mild;Opacity/lung/base/left;Pulmonary Atelectasis/base;Catheters, Indwelling")
    assert ref == {"Cardiomegaly": 1, "Lung Opacity": 1, "Atelectasis": 1, "Support Devices": 1}
    assert mesh_to_labels("normal") == {"No Finding": 1}
    assert mesh_to_labels("Catheters, Indwelling/right") == {"Support Devices": 1, "No Finding": 1}
    assert mesh_to_labels("Calcified Granuloma/lung/upper lobe/right") == {"No Finding": 1}
    assert mesh_to_labels("No Indexing") is None
    assert mesh_to_labels("Opacity/ribs/right") == {"No Finding": 1}
    assert mesh_to_labels("Thickening/pleura/apex/bilateral") == {"Pleural Other": 1}


def test_backends():
    with pytest.raises(InputError, match="unknown labeler backend"):
        get_labeler("magic")
    with pytest.raises(InputError, match="label_texts"):  # CheXbert is a metrics-layer model
        get_labeler("chexbert")
