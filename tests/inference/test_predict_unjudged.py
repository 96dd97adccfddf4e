"""Which statements a finding head's plan supports: none about a finding it did not assess, in a
normal report or not."""

from cxreport.inference.predict import _unjudged
from cxreport.text.faithful import make_faithful


def test_not_assessed_findings_are_unjudged_normal_report_or_not():
    plan = {"No Finding": "negative", "Cardiomegaly": "not_assessed", "Lung Opacity": "positive",
            "Pleural Effusion": "negative"}
    assert _unjudged(plan) == ["Cardiomegaly"]
    assert _unjudged({**plan, "No Finding": "positive", "Lung Opacity": "negative"}) == ["Cardiomegaly"]
    assert _unjudged(None) == []


def test_a_normal_report_says_only_what_the_model_assessed():
    plan = {"No Finding": "positive", "Cardiomegaly": "not_assessed", "Enlarged Cardiomediastinum": "not_assessed",
            "Lung Lesion": "not_assessed", "Lung Opacity": "negative", "Pleural Effusion": "negative"}
    text, info = make_faithful(["The heart is normal in size. The mediastinum is unremarkable. The lungs are clear."],
                               plan, unjudged=_unjudged(plan))
    assert text == "No acute cardiopulmonary abnormality." and info["agrees"]
    # not earned: the normal sentence is never written
    text, _ = make_faithful(["No acute cardiopulmonary abnormality."], {**plan, "No Finding": "uncertain"},
                            unjudged=_unjudged(plan))
    assert "No acute" not in text
