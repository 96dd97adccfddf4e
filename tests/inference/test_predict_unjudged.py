"""Which denials a finding head's plan supports."""

from cxreport.inference.predict import _unjudged


def test_not_assessed_findings_are_unjudged_unless_the_study_is_called_normal():
    plan = {"No Finding": "negative", "Cardiomegaly": "not_assessed", "Lung Opacity": "positive",
            "Pleural Effusion": "negative"}
    assert _unjudged(plan) == ["Cardiomegaly"]
    assert _unjudged({**plan, "No Finding": "positive", "Lung Opacity": "negative"}) == []
    assert _unjudged(None) == []
