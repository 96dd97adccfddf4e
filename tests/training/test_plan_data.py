"""Training text and plans: rare positives oversampled, unwanted sentences left out before labelling."""

import numpy as np

from cxreport.text.labeler import label_reports
from cxreport.training.setup import oversample_positives


class _Reports:
    def __init__(self, texts):
        self.texts = texts
        from cxreport.data.dataset import labels_vector

        self.labels = [labels_vector(lab) for lab in label_reports(texts)]

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i]


def test_rare_positive_reports_are_repeated_up_to_the_cap():
    texts = ["There is pulmonary edema."] + ["The lungs are clear."] * 9 + ["Mild cardiomegaly."] * 5
    ds = _Reports(texts)
    over = oversample_positives(ds, min_positives=4, cap=3)
    items = [over[i] for i in range(len(over))]
    assert items.count("There is pulmonary edema.") == 3  # wanted 4, capped at 3
    assert items.count("Mild cardiomegaly.") == 5 and items.count("The lungs are clear.") == 9
    assert oversample_positives(ds, 0) is ds and np.isnan(ds.labels[1][5])
