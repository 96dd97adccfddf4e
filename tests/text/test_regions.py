from cxreport.text.regions import REGIONS, content_f1, score_regions, split_regions


def test_split_basic_and_rewrites():
    out = split_regions("The cardiomediastinal silhouette is normal. The lungs are clear. "
                        "No pneumothorax or pleural effusion. Degenerative changes of the thoracic spine. "
                        "XXXX are unremarkable.")
    assert set(out) == set(REGIONS)
    assert out["heart"] == "Cardiac contours are within normal limits."
    assert out["mediastinal"] == "Mediastinal contours are within normal limits."
    assert out["lung"] == "The lungs are clear. No pneumothorax or pleural effusion."
    assert out["bone"] == "Degenerative changes of the thoracic spine."
    assert out["others"] == "XXXX are unremarkable."  # a de-identified subject stays whole, in others


def test_compound_subjects_and_lists_split_by_region():
    out = split_regions("Heart size and mediastinal contours are within normal limits. "
                        "No pneumonia, effusions, adenopathy, nodules or masses.")
    assert out["heart"] == "Heart size is within normal limits."
    assert out["mediastinal"].startswith("Mediastinal contours are within normal limits.")
    assert "adenopathy" in out["mediastinal"] and "adenopathy" not in out["lung"]
    assert out["lung"].startswith("No pneumonia")
    out = split_regions("Normal heart size and mediastinal contours.")
    assert out["heart"] == "Normal heart size." and out["mediastinal"] == "Normal mediastinal contours."


def test_xxxx_dropped_outside_others_and_empty_text():
    out = split_regions("Calcified XXXX granuloma in the right lung.")
    assert out["lung"] == "Calcified granuloma in the right lung."
    assert split_regions("") == {r: "" for r in REGIONS}


def test_content_f1_and_scorer():
    assert content_f1("", "") == 1.0
    assert content_f1("Lungs are clear.", "") == 0.0
    assert content_f1("The lungs are clear.", "Lungs clear") == 1.0  # stop words removed
    assert 0 < content_f1("Heart size normal.", "Heart is enlarged.") < 1
    gold = [{"lung": "Lungs are clear.", "heart": "Heart size normal.", "mediastinal": "", "bone": "", "others": ""}]
    s = score_regions(gold, gold)
    assert s["f1"] == 1.0 and s["regions"]["lung"]["mention_recall"] == 1.0
    pred = [{"lung": "Lungs are clear.", "heart": "", "mediastinal": "", "bone": "Ribs intact.", "others": ""}]
    s = score_regions(pred, gold)
    assert s["regions"]["heart"]["f1"] == 0.0 and s["regions"]["bone"]["mention_precision"] == 0.0
    assert abs(s["f1"] - 3 / 5) < 1e-9


def test_negated_adjectives_share_their_noun():
    out = split_regions("No acute bony or pulmonary abnormality. No acute bony or soft tissue abnormality.")
    assert out["lung"] == "No pulmonary abnormality."
    # the first bone clause is subsumed by the second sentence, so only the longer one is kept
    assert out["bone"] == "No acute bony or soft tissue abnormality."
    assert out["others"] == ""


def test_cardiac_and_mediastinal_keep_their_noun():
    out = split_regions("The cardiac and mediastinal silhouettes are normal.")
    assert out["heart"] == "Cardiac silhouette is normal."
    assert out["mediastinal"] == "Mediastinal silhouette is normal."
