"""Finding states: calibration, the uncertain band, abstention for findings with too few positives,
and no findings for a study of laterals only."""

import math

import pytest


def _model(**findings):
    from cxreport.models import create_model

    return create_model("tiny", vocab_size=30, findings={"image_memory": False, **findings})


def test_calibration_scale_offset_and_prior():
    import torch

    from cxreport.models.finding_states import calibrated_probs

    m = _model(calibration={"Edema": {"scale": 0.5, "offset": 1.0}}, prior={"Edema": 0.2})
    logits = torch.zeros(1, 14)
    logits[0, m.labels.index("Edema")] = 2.0
    p = calibrated_probs(logits, m.cfg.findings, m.labels)
    expect = 1 / (1 + math.exp(-(0.5 * 2.0 + 1.0 + math.log(0.2 / 0.8))))
    assert p[0, m.labels.index("Edema")].item() == pytest.approx(expect, rel=1e-5)
    assert p[0, m.labels.index("Cardiomegaly")].item() == pytest.approx(0.5)


def test_states_positive_uncertain_negative_and_not_assessed():
    import torch

    from cxreport.models.finding_states import finding_states

    counts = {n: 100 for n in ("No Finding", "Edema", "Pneumonia", "Atelectasis")}
    m = _model(train_positives=counts, min_positives=30, uncertain_thresholds={"Edema": 0.2, "Pneumonia": 0.2})
    probs = {n: 0.1 for n in m.labels}
    probs.update({"Edema": 0.6, "Pneumonia": 0.3, "Cardiomegaly": 0.99, "Fracture": 0.99})
    s = finding_states(probs, m.cfg.findings, m.labels)
    assert s["Edema"] == "positive" and s["Pneumonia"] == "uncertain" and s["Atelectasis"] == "negative"
    # too few training positives: never positive, whatever the threshold
    assert s["Cardiomegaly"] == "not_assessed" and s["Fracture"] == "not_assessed"
    low = finding_states(probs, m.cfg.findings, m.labels, override=0.05)
    assert low["Cardiomegaly"] == "not_assessed" and low["Atelectasis"] == "positive"
    assert set(finding_states(None, m.cfg.findings, m.labels).values()) == {"not_assessed"}
    plans = m.plan_states(torch.tensor([[probs[n] for n in m.labels]]), torch.tensor([True]))
    assert plans[0] == s


def test_old_checkpoints_without_counts_abstain_on_never_positive_findings():
    from cxreport.models.finding_states import assessed

    m = _model(thresholds={"Fracture": 1.01})
    ok = assessed(m.cfg.findings, m.labels)
    assert not ok["Fracture"] and ok["Edema"]


def test_lateral_only_study_is_not_assessed_by_a_frontal_head():
    import torch

    m = _model(train_positives={n: 100 for n in ("Edema",)})
    m.cfg.views.head_views = "frontal"
    img = torch.rand(2, 2, 1, 32, 32)
    mask = torch.tensor([[True, True], [True, False]])
    views = torch.tensor([[1, 0], [1, 2]])
    reads = m.head_reads(mask, views)
    assert reads.tolist() == [True, False]
    outs = m.generate(img, mask, views, max_len=3)
    assert outs[0]["finding_plan"]["Edema"] in ("positive", "negative", "uncertain")
    assert outs[1]["finding_plan"]["Edema"] == "not_assessed"
