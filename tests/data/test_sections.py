"""MIMIC-CXR report sectioning, on hand-written reports in the release's format.

Real reports indent every line by one space and separate paragraphs with " \\n"; headers are
recognised only in that form, as in the official MIT-LCP parser.
"""

from cxreport.text.sections import normalize_section_name, parse_report_sections


def report(*lines: str) -> str:
    return "                                 FINAL REPORT\n" + "".join(f" {ln}\n" for ln in lines)


FULL = report(
    "EXAMINATION:  CHEST (PA AND LAT)", "",
    "INDICATION:  ___M with fever  // ?pneumonia", "",
    "TECHNIQUE:  Chest PA and lateral", "",
    "COMPARISON:  Radiograph from ___.", "",
    "FINDINGS: ", "",
    "Heart size is normal. There is a new right lower lobe opacity.",
    "No pleural effusion or pneumothorax.", "",
    "IMPRESSION: ", "",
    "Right lower lobe pneumonia.",
)


def test_standard_report_all_sections():
    out = parse_report_sections(FULL)
    assert out["findings"] == (
        "Heart size is normal. There is a new right lower lobe opacity.\n No pleural effusion or pneumothorax."
    )
    assert out["impression"] == "Right lower lobe pneumonia."
    assert out["comparison"] == "Radiograph from ___."
    assert out["indication"] == "___M with fever  // ?pneumonia"
    assert out["last_paragraph"] == ""
    assert out["conclusion"] == "Right lower lobe pneumonia."
    names = [name for name, _ in out["sections"]]
    assert names == ["preamble", "examination", "indication", "technique", "comparison", "findings", "impression"]
    assert out["sections"][0] == ("preamble", "FINAL REPORT")


def test_misspelt_and_alternative_headers_are_normalised():
    text = report(
        "REASON FOR EXAM:  Cough.", "",
        "COMPARISONS:  None.", "",
        "FINDNGS: ", "",
        "Lungs are clear.", "",
        "IMPRESSIONS: ", "",
        "Normal chest.",
    )
    out = parse_report_sections(text)
    assert (out["indication"], out["comparison"]) == ("Cough.", "None.")
    assert (out["findings"], out["impression"]) == ("Lungs are clear.", "Normal chest.")
    assert parse_report_sections(report("CONCLUSION:  Stable.", ""))["impression"] == "Stable."
    assert parse_report_sections(report("IMPRESSON:  Stable."))["impression"] == "Stable."


def test_header_name_rules():
    assert normalize_section_name("FINDINGS/IMPRESSION") == "impression"  # table entry
    assert normalize_section_name("PRIOR COMPARISON") == "comparison"  # contains a main section
    assert normalize_section_name("CHEST, PA AND LATERAL") == "findings"  # describes the study
    assert normalize_section_name("PA VIEW") == "findings"
    assert normalize_section_name("RECOMMENDATION(S)") == "recommendations"
    assert normalize_section_name("CLINICAL HISTORY") == "history"
    assert normalize_section_name("FOO BAR") == "foo bar"  # unknown headers are kept, lower-cased
    assert normalize_section_name("NDICATION") == "impression"  # official table quirk, kept on purpose


def test_report_without_headers_uses_last_paragraph():
    text = report("CHEST RADIOGRAPH PERFORMED ON ___", "", "Heart size is normal.", "", "No pneumothorax.")
    out = parse_report_sections(text)
    assert out["findings"] == out["impression"] == ""
    assert out["last_paragraph"] == "Heart size is normal.\n \n No pneumothorax."
    assert out["conclusion"] == out["last_paragraph"]
    assert out["sections"][0] == ("full report", "FINAL REPORT\n CHEST RADIOGRAPH PERFORMED ON ___")


def test_impression_only_report():
    text = report("INDICATION:  Chest pain.", "", "COMPARISON:  ___", "", "IMPRESSION: ", "", "No acute process.")
    out = parse_report_sections(text)
    assert out["findings"] == "" and out["last_paragraph"] == ""
    assert out["impression"] == out["conclusion"] == "No acute process."


def test_empty_title_header_is_dropped_and_findings_like_header_counts():
    # An empty "CHEST, PA LATERAL:" title reads as findings; empty findings sections are dropped.
    text = report("CHEST, PA LATERAL:", "", "INDICATION:  Dyspnea.", "", "PORTABLE AP CHEST:  Low lung volumes.")
    out = parse_report_sections(text)
    assert [n for n, _ in out["sections"]] == ["preamble", "indication", "findings"]
    assert out["findings"] == out["conclusion"] == "Low lung volumes."


def test_last_section_of_a_name_wins_and_same_line_text():
    text = report("IMPRESSION:  First read.", "", "ADDENDUM:  Called Dr. ___.", "", "IMPRESSION:  Revised read.")
    assert parse_report_sections(text)["impression"] == "Revised read."


def test_comparison_is_the_conclusion_of_last_resort():
    out = parse_report_sections(report("COMPARISON:  Unchanged since ___."))
    assert out["conclusion"] == out["comparison"] == "Unchanged since ___."
    assert out["findings"] == out["impression"] == out["last_paragraph"] == ""


def test_headers_need_the_release_indentation():
    # Without the leading space the official parser sees no header; so do we.
    out = parse_report_sections("FINAL REPORT\nFINDINGS: Clear lungs.\nIMPRESSION: Normal.\n")
    assert out["findings"] == out["impression"] == ""
    assert out["sections"][0][0] == "full report"


def test_windows_newlines_and_empty_text():
    assert parse_report_sections(FULL.replace("\n", "\r\n"))["impression"] == "Right lower lobe pneumonia."
    empty = parse_report_sections("")
    assert {k: empty[k] for k in ("findings", "impression", "last_paragraph", "comparison", "indication")} == dict.fromkeys(
        ("findings", "impression", "last_paragraph", "comparison", "indication"), ""
    )


def test_official_per_study_overrides():
    text = report("FINDINGS:  Lungs clear.", "", "RECOMMENDATION(S):  Follow-up CT in 3 months.")
    plain = parse_report_sections(text)
    assert plain["impression"] == "" and plain["custom_rule"] == ""
    # s50913680's conclusion sits in its recommendations section (official custom rule).
    for sid in ("s50913680", "50913680"):
        out = parse_report_sections(text, study_id=sid)
        assert out["impression"] == out["conclusion"] == "Follow-up CT in 3 months."
        assert out["custom_rule"] == "section_name" and out["findings"] == "Lungs clear."
    # s58235663 has no findings at all: its official span is empty.
    out = parse_report_sections(text, study_id="s58235663")
    assert out["impression"] == out["conclusion"] == "" and out["custom_rule"] == "indices"
    # A span study: characters [59, 399) of the report.
    long_text = "x" * 59 + "THE CONCLUSION" + "y" * 400
    assert parse_report_sections(long_text, study_id="s50196495")["impression"].startswith("THE CONCLUSION")
