import pytest

from cxreport.errors import InputError
from cxreport.text.clean import clean_report, normalise_deid, split_words


@pytest.mark.parametrize("text,want", [
    # lower-case, split on ". ", strip punctuation, join with " . " and end with " ."
    ("The heart is normal. The lungs are clear.", "the heart is normal . the lungs are clear ."),
    # ".." collapsed; list markers "1. " / " 2. " removed
    ("1. No acute disease.. 2. Stable cardiomegaly.", "no acute disease . stable cardiomegaly ."),
    # commas, parentheses, colons, slashes, quotes and apostrophes go; hyphens stay (R2Gen's regex range)
    ('Left-sided (small) effusion, "stable": it\'s 1/2 size.', "left-sided small effusion stable its 12 size ."),
    # decimals lose their point: the cleaner strips every "."
    ("A 2.5 cm nodule.", "a 25 cm nodule ."),
    # de-identification tokens are only lower-cased
    ("Normal chest x-XXXX.", "normal chest x-xxxx ."),
    # no sentence break without a space after the period
    ("Normal heart.Clear lungs.", "normal heartclear lungs ."),
])
def test_r2gen_iu(text, want):
    assert clean_report(text, "r2gen", "iu") == want


def test_r2gen_mimic_newlines_and_underscores():
    text = "FINDINGS:\n The heart ___ is normal...  No effusion."
    assert clean_report(text, "r2gen", "mimic") == "findings the heart  is normal . no effusion ."


def test_r2gen_keeps_empty_sentences_like_r2gen():
    # R2Gen filters with ``!= []`` on strings, so an empty sentence survives
    assert clean_report("Normal. . Clear.", "r2gen", "iu") == "normal .  . clear ."


def test_default_keeps_negations_numbers_units_and_normalises_deid():
    out = clean_report("1. No pneumothorax.  2. A 2.5 cm nodule, XXXX-year-old XXXX XXXX.Heart 50% normal",
                       "default")
    assert out == "no pneumothorax. a 2.5 cm nodule, xxxx. heart 50% normal."
    assert normalise_deid("x-XXXX and XXXX, XXXX") == "xxxx and xxxx"
    assert split_words("a 2.5 cm nodule, xxxx.") == ["a", "2.5", "cm", "nodule", ",", "xxxx", "."]
    assert clean_report("", "default") == ""


def test_unknown_protocol_or_dataset():
    with pytest.raises(InputError, match="protocol"):
        clean_report("x", "fancy")
    with pytest.raises(InputError, match="dataset"):
        clean_report("x", "r2gen", "chexpert")
