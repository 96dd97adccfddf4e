"""Real-data checks: labeler vs IU X-Ray MeSH codes, regions vs the curated region reports."""

import pytest

from cxreport.text.validate import MIN_CASES, TARGETS, labeler_tables, load_iu, region_scores


@pytest.mark.shared
def test_labeler_meets_f1_targets_on_train(shared_data):
    rows = load_iu(shared_data / "iu_xray")
    table = labeler_tables(rows)["train"]["u0"]
    for obs, target in TARGETS.items():
        assert table[obs]["f1"] >= target, (obs, table[obs])
    for obs, r in table.items():
        if r["n"] >= MIN_CASES and obs not in TARGETS:
            assert r["f1"] >= 0.80, (obs, r)


@pytest.mark.shared
def test_region_annotator_on_curated_train(shared_data):
    scores = region_scores(shared_data / "iu_xray")
    assert scores["ours"]["f1"] >= 0.89
    assert scores["ours"]["f1"] > scores["baseline"]["f1"] + 0.05
