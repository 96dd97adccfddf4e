"""Clinical efficacy averages, the uncertain policy, bootstrap intervals and the paired test."""

import numpy as np
import pytest

from cxreport.metrics.clinical import clinical_scores
from cxreport.metrics.scoring import score
from cxreport.metrics.stats import ItemStats, bootstrap, paired_randomisation

# 3 studies; references and hypotheses as labeler outputs (1 pos, 0 neg, -1 uncertain, None absent).
REF = [{"Cardiomegaly": 1, "Edema": 1}, {"Pleural Effusion": 1}, {"No Finding": 1}]
HYP = [{"Cardiomegaly": 1, "Edema": -1}, {"Pleural Effusion": 1, "Atelectasis": 1}, {"No Finding": 1}]


def test_micro_macro_example_by_hand():
    v, _, info = clinical_scores(HYP, REF, uncertain="negative")
    # chexpert14: TP = cardio, effusion, no finding = 3; FP = atelectasis = 1; FN = edema (uncertain->neg) = 1
    assert v["CE14-micro-P"] == pytest.approx(3 / 4) and v["CE14-micro-R"] == pytest.approx(3 / 4)
    # per study F1: 2/3, 2/3, 1 -> mean
    assert v["CE14-example-F1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # macro over 14 labels: F1 1 for cardio, effusion, no finding; 0 for edema, atelectasis and 9 absent ones
    assert v["CE14-macro-F1"] == pytest.approx(3 / 14)
    # chexpert5: cardio TP, edema FN, effusion TP, atelectasis FP
    assert v["CE5-micro-F1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert v["CE5-example-F1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)  # study 3: nothing on either side -> 0
    assert info["uncertain"] == "negative" and info["labeler"] == "rules" and info["zero_division"] == 0
    per = {r["label"]: r for r in info["label_sets"]["chexpert5"]["per_label"]}
    assert per["Edema"]["support"] == 1 and per["Edema"]["f1"] == 0


def test_uncertain_positive_counts_uncertain_mentions():
    v, _, _ = clinical_scores(HYP, REF, uncertain="positive")
    assert v["CE14-micro-R"] == pytest.approx(1.0)  # edema now found
    with pytest.raises(Exception, match="positive or negative"):
        clinical_scores(HYP, REF, uncertain="maybe")


def test_score_names_everything_and_ci_contains_value():
    refs = ["The heart is enlarged. Small left pleural effusion.", "No acute disease. Lungs are clear.",
            "Mild pulmonary edema.", "Normal chest."] * 5
    hyps = ["The heart is enlarged. No effusion.", "Lungs are clear.", "Edema is present.", "Normal chest."] * 5
    res = score(hyps, refs, metrics="bleu,rouge,ce", bootstrap=300)
    assert res["clinical"]["labeler"] == "rules" and res["clinical"]["uncertain"] == "positive"
    assert res["protocol"]["name"] == "full" and res["bootstrap"]["resamples"] == 300
    for name, m in res["metrics"].items():
        lo, hi = m["ci95"]
        assert lo - 1e-12 <= m["value"] <= hi + 1e-12, name
    assert len(res["per_study"]) == 20 and "ref_positive" in res["per_study"][0]


def test_bootstrap_of_a_mean_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.1, 400)
    block = ItemStats(["m"], x[:, None], lambda s, n: s / n)
    lo, hi = bootstrap([block], n_resamples=2000, seed=1)["m"]["ci95"]
    se = x.std() / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.003) and hi == pytest.approx(x.mean() + 1.96 * se, abs=0.003)


def test_randomisation_separates_different_systems_only():
    rng = np.random.default_rng(0)
    a = rng.random(200)[:, None]
    same = ItemStats(["m"], a, lambda s, n: s / n)
    noisy = ItemStats(["m"], a + rng.normal(0, 0.01, a.shape), lambda s, n: s / n)
    better = ItemStats(["m"], a + 0.2, lambda s, n: s / n)
    assert paired_randomisation([same], [noisy], 500)["m"]["p_value"] > 0.05
    r = paired_randomisation([better], [same], 500)["m"]
    assert r["p_value"] == pytest.approx(1 / 501) and r["diff"] == pytest.approx(0.2)
