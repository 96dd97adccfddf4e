"""Plan-faithful text: what the labeler reads back must agree with the plan."""

import itertools

import pytest

from cxreport.labels import FINDING_STATES
from cxreport.text.faithful import (CHECKED, NEGATIVE_SENTENCES, NEGATIVE_TERMS, POSITIVE_SENTENCES, check,
                                     make_faithful, negatives_sentences, plan_report)
from cxreport.text.labeler import label_report
from cxreport.text.wording import drop_sentences, has_comparison, single_view


def _plan(default="negative", **states):
    plan = {k: default for k in CHECKED}
    plan.update({k.replace("_", " "): v for k, v in states.items()})
    return plan


@pytest.mark.parametrize("finding", CHECKED)
def test_each_positive_sentence_states_its_finding_and_nothing_else(finding):
    reading = label_report(POSITIVE_SENTENCES[finding])
    assert reading[finding] == 1
    assert all(v is None for k, v in reading.items() if k not in (finding, "No Finding"))


def test_plan_sentences_agree_with_any_pair_of_positives():
    for a, b in itertools.combinations(CHECKED, 2):
        plan = _plan(**{a.replace(" ", "_"): "positive", b.replace(" ", "_"): "positive"})
        assert check(plan_report(plan), plan)["agrees"], (a, b)
    assert check(plan_report(_plan()), _plan())["agrees"]


def test_a_denied_positive_is_dropped_and_stated():
    plan = _plan(Pleural_Effusion="positive")
    text, info = make_faithful(["There appears no pleural effusion. The heart is normal."], plan)
    assert check(text, plan)["agrees"] and info["agrees"]
    assert "no pleural effusion" not in text.lower() and "pleural effusion" in text.lower()
    assert info["added"] == ["Pleural Effusion"]


def test_negative_findings_are_never_asserted():
    plan = _plan()
    text, info = make_faithful(["Mild cardiomegaly. No pneumothorax or pleural effusion."], plan)
    assert "cardiomegaly" not in text.lower() and "pneumothorax" in text.lower()
    assert check(text, plan)["agrees"]


def test_reranking_prefers_the_candidate_that_agrees():
    plan = _plan(Pneumonia="positive")
    text, info = make_faithful(["No focal airspace opacity to suggest a pneumonia.",
                                "Findings consistent with pneumonia."], plan)
    assert info["candidate"] == 1 and info["added"] == [] and "Findings consistent with pneumonia." in text


def test_comparison_wording_and_deid_residue_are_removed_without_a_prior():
    plan = _plan()
    text, _ = make_faithful(["The mediastinum is stable. No xxxx pneumonia. Lungs are clear."], plan)
    assert not has_comparison(text) and "xxxx" not in text and "Lungs are clear." in text
    kept, _ = make_faithful(["The mediastinum is stable. Lungs are clear."], plan, prior=True)
    assert "stable" in kept


@pytest.mark.parametrize("sentence, compares", [
    ("There has been increased interstitial opacities.", True),  # written by the bundled decoder
    ("There has been a slight decrease in the effusion.", True),
    ("There has been large pleural effusion.", True),  # "there has been": a change or a history
    ("The endotracheal tube has been removed.", True),
    ("There is increased opacity at the left base.", False),  # density, not change
    ("Increased interstitial markings.", False)])
def test_change_since_an_earlier_study_counts_as_comparison(sentence, compares):
    assert has_comparison(sentence) is compares


def test_one_film_is_not_described_as_two_views():
    text, _ = make_faithful(["Frontal and lateral views of the chest were obtained. Lungs are clear."], _plan(),
                            views=1)
    assert "lateral" not in text and "Frontal view" in text
    assert single_view("PA and lateral radiographs") == "PA radiograph"


def test_not_assessed_findings_are_never_asserted_and_empty_text_gets_a_normal_line():
    plan = _plan(default="not_assessed")
    text, info = make_faithful(["A pacemaker is present."], plan)
    assert "pacemaker" not in text.lower() and info["agrees"] and text
    assert set(FINDING_STATES) == {"positive", "negative", "uncertain", "not_assessed"}


def test_drop_sentences_for_training_text():
    assert drop_sentences("The xxxx are intact. Heart is stable. Lungs clear.", ["deid"]) == \
        "Heart is stable. Lungs clear."
    assert drop_sentences("The xxxx are intact. Heart is stable. Lungs clear.") == "Lungs clear."


def test_an_uncertain_finding_is_hedged_never_asserted_nor_denied():
    plan = {k: "negative" for k in CHECKED}
    plan["Pleural Effusion"] = "uncertain"
    assert not check("There is no pleural effusion.", plan)["agrees"]
    assert not check("There is a pleural effusion.", plan)["agrees"]
    assert not check("Heart size is normal.", plan)["agrees"]  # silence is not a hedge
    assert check("Possible small pleural effusion.", plan)["agrees"]
    text, _ = make_faithful(["Heart size is normal. There is no pleural effusion."], plan)
    assert "Heart size is normal." in text and "There is no pleural effusion." not in text
    assert "A pleural effusion cannot be excluded." in text
    assert label_report(text)["Pleural Effusion"] == -1


@pytest.mark.parametrize("sentence, denies", [
    ("Lungs are clear.", True), ("The lungs are clear bilaterally.", True), ("Clear lungs.", True),
    ("No acute cardiopulmonary abnormality.", True), ("The lungs are otherwise clear.", False),
    ("The heart is normal in size.", False)])
def test_a_whole_organ_normal_statement_does_not_sit_beside_a_positive(sentence, denies):
    plan = {k: "negative" for k in CHECKED}
    plan["Lung Opacity"] = "positive"
    assert check(f"There is an opacity in the lung. {sentence}", plan)["agrees"] is not denies
    text, _ = make_faithful([f"There is an opacity in the lung. {sentence}"], plan)
    assert (sentence in text) is not denies
    assert check(sentence, {k: "negative" for k in CHECKED})["agrees"]  # fine when nothing is positive


@pytest.mark.parametrize("sentence, invented", [
    ("There is a small calcified granuloma in the right upper lobe.", True),
    ("There are mild degenerative changes of the spine.", True),
    ("The lungs are hyperexpanded but clear.", True),
    ("No pleural effusion, but there is a calcified granuloma.", True),
    ("No scoliosis.", False), ("No evidence of emphysema or fibrosis.", False), ("Heart size normal.", False)])
def test_findings_the_plan_cannot_hold_are_not_asserted(sentence, invented):
    from cxreport.text.wording import has_unsupported

    assert has_unsupported(sentence) is invented
    plan = {k: "negative" for k in CHECKED}
    text, _ = make_faithful([f"Heart size is normal. {sentence}"], plan)
    assert (sentence in text) is not invented and "Heart size is normal." in text


def test_a_sentence_cut_off_at_the_length_limit_is_dropped():
    text, info = make_faithful(["The heart is normal in size. No pneumothorax. There air under"],
                               {"No Finding": "positive"})
    assert text == "The heart is normal in size. No pneumothorax." and info["dropped_sentences"] == 1


def test_every_set_of_left_out_negatives_reads_back_as_exactly_those_negatives():
    stated = list(NEGATIVE_SENTENCES) + list(NEGATIVE_TERMS)
    for n in range(1, len(stated) + 1):
        for subset in itertools.combinations(stated, n):
            plan = {k: "negative" for k in subset}
            sents, findings = negatives_sentences("", plan)
            reading = check(" ".join(sents), plan)["reading"]
            assert sorted(findings) == sorted(subset)
            assert {k for k, v in reading.items() if v is not None} == set(subset), subset
            assert all(reading[k] == 0 for k in subset), subset


def test_negatives_the_text_left_out_are_stated_once_after_it():
    plan = _plan("not_assessed", Cardiomegaly="negative", Pneumothorax="negative", Pleural_Effusion="negative",
                 Pneumonia="positive")
    text, info = make_faithful(["Findings consistent with pneumonia. No pleural effusion."], plan)
    assert text == "Findings consistent with pneumonia. No pleural effusion. The heart is normal in size. No pneumothorax."
    assert info["added_negatives"] == ["Cardiomegaly", "Pneumothorax"] and check(text, plan)["agrees"]


def test_a_whole_organ_normal_statement_covers_its_negatives_and_unknown_states_add_nothing():
    plan = _plan("not_assessed", Lung_Opacity="negative", Edema="negative", Atelectasis="negative")
    text, info = make_faithful(["The lungs are clear."], plan)
    assert text == "The lungs are clear." and info["added_negatives"] == []
    # A finding head's below-threshold findings reach the check as unknown (not_assessed): a
    # weak "no" from the head is not written as a pertinent negative.
    text, info = make_faithful(["The heart is normal in size."], _plan("not_assessed"))
    assert text == "The heart is normal in size." and info["added_negatives"] == []


@pytest.mark.parametrize("sentence, kept", [
    ("There is a small right lower lobe opacity.", False),  # where and how big: not in the plan
    ("Mild bibasilar atelectasis.", False),
    ("Findings consistent with pneumonia.", True),
    ("No right pleural effusion.", True),  # a denial with a side asserts nothing
    ("The heart is normal in size.", True),
])
def test_a_finding_stated_with_a_side_lobe_or_size_is_replaced_by_the_plain_sentence(sentence, kept):
    plan = _plan("not_assessed", Lung_Opacity="positive", Atelectasis="positive", Pneumonia="positive",
                 Pleural_Effusion="negative")
    text, info = make_faithful([sentence], plan)
    assert (sentence in text) is kept, text
    assert check(text, plan)["agrees"] and "There is an opacity in the lung." in text


def test_a_denial_of_a_finding_the_model_cannot_judge_is_dropped():
    plan = _plan("not_assessed", Lung_Opacity="positive", Pleural_Effusion="negative")
    text, _ = make_faithful(["There is an opacity in the lung. The heart is normal in size. No pleural effusion."],
                            plan, unjudged=["Cardiomegaly"])
    assert text == "There is an opacity in the lung. No pleural effusion."
    kept, _ = make_faithful(["The heart is normal in size."], plan)  # a given plan: the caller judged
    assert "The heart is normal in size." in kept


def test_a_run_on_sentence_is_dropped():
    plan = _plan("not_assessed", Pleural_Effusion="positive")
    text, _ = make_faithful(["There is a pleural effusion. No acute bony abnormality is seen is identified is seen."],
                            plan)
    assert text == "There is a pleural effusion."


def test_normal_vessels_do_not_sit_beside_edema():
    plan = _plan("not_assessed", Edema="positive")
    text, _ = make_faithful(["There is pulmonary edema. The pulmonary vascularity is within normal limits in appearance."],
                            plan)
    assert text == "There is pulmonary edema."
    kept, _ = make_faithful(["Pulmonary vascularity is within normal limits."], _plan("not_assessed"))
    assert kept == "Pulmonary vascularity is within normal limits."


def test_decoder_grammar_slips_are_mended_and_unassessed_bones_never_described():
    plan = {k: "negative" for k in CHECKED}
    plan.update(Pneumonia="positive", Fracture="not_assessed", Edema="uncertain")
    text, info = make_faithful(["There is a pneumonia. The bony structures are intact. There appears no acute bony "
                                "findings. Pulmonary vascularity is within normal limits."], plan,
                               unjudged=["Fracture"])
    assert text.startswith("There is pneumonia.") and info["agrees"]
    assert "bony" not in text  # a fracture the model does not assess is neither denied nor asserted
    assert "vascularity" not in text  # normal vessels beside an edema that cannot be excluded
    assert "Pulmonary edema cannot be excluded." in text
