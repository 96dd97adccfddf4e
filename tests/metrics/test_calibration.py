import numpy as np
import pytest

from cxreport.metrics.calibration import ece_table, expected_calibration_error, reliability_bins


def test_perfectly_calibrated_bins_have_zero_error():
    p = np.array([0.1] * 10 + [0.9] * 10)
    y = np.array([1] + [0] * 9 + [1] * 9 + [0])
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    rows = reliability_bins(p, y)
    assert [r["n"] for r in rows] == [10, 10]


def test_overconfident_predictions_show_their_gap():
    p = np.full(10, 0.95)
    y = np.array([1] * 5 + [0] * 5)
    assert expected_calibration_error(p, y) == pytest.approx(0.45)
    t = np.stack([y, np.full(10, np.nan)], 1).astype(float)
    table = ece_table(np.stack([p, p], 1), t, ["A", "B"])
    assert table == {"A": pytest.approx(0.45)}
