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
    # soft tissue goes to others, as most curators split it (the repeated bone clause is written once)
    assert out["bone"] == "No acute bony abnormality."
    assert out["others"] == "No soft tissue abnormality."


def test_cardiac_and_mediastinal_keep_their_noun():
    out = split_regions("The cardiac and mediastinal silhouettes are normal.")
    assert out["heart"] == "Cardiac silhouette is normal."
    assert out["mediastinal"] == "Mediastinal silhouette is normal."


def test_xxxx_words_restored_where_obvious():
    out = split_regions("Calcified right hilar lymph XXXX. Blunting of the left costophrenic XXXX. "
                        "There are no XXXX of a large pleural effusion. Specifically, no pneumothorax.")
    assert out["mediastinal"] == "Calcified right hilar lymph nodes."
    assert out["lung"] == ("Blunting of the left costophrenic angle. There are no evidence of a large pleural "
                           "effusion. No pneumothorax.")
    assert out["others"] == ""


def test_heart_with_vascularity_stays_whole_and_pulmonary_xxxx_is_dropped():
    out = split_regions("Heart size and pulmonary vascularity appear within normal limits.")
    assert out["heart"] == "Heart size and pulmonary vascularity appear within normal limits."
    assert out["lung"] == "" and out["mediastinal"] == ""
    out = split_regions("The heart, pulmonary XXXX and mediastinum are within normal limits.")
    assert out["heart"] == "Heart is within normal limits."
    assert out["mediastinal"] == "Mediastinum is within normal limits."
    assert out["lung"] == "" and out["others"] == ""
    out = split_regions("The cardiomediastinal silhouette and pulmonary vasculature are within normal limits.")
    assert out["heart"] == "Cardiac contours are within normal limits." and out["lung"] == ""


def test_technique_remarks_and_exam_lines():
    out = split_regions("Chest. PA and lateral views of the chest were obtained. "
                        "Considering technical factors, heart size within normal limits. "
                        "Frontal and lateral views of the chest with overlying external cardiac monitor leads "
                        "show clear lungs.")
    assert out["others"] == "Considering technical factors. Overlying external cardiac monitor leads."
    assert out["heart"] == "Heart size within normal limits."
    assert out["lung"] == "Clear lungs."


def test_missing_and_bones_and_upper_abdomen():
    out = split_regions("Heart size mediastinal contours are normal. Normal cardiomediastinal silhouette. "
                        "The visualized osseous structures and upper abdomen are unremarkable. XXXX XXXX are intact.")
    assert out["heart"].startswith("Heart size is normal.") and "Normal cardiac contours." in out["heart"]
    assert out["mediastinal"].startswith("Mediastinal contours are normal.")
    assert out["bone"] == "Visualized osseous structures are unremarkable. XXXX XXXX are intact."
    assert out["others"] == "Upper abdomen is unremarkable."
