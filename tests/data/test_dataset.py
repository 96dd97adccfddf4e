import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from cxreport.data.cache import prepare_cache
from cxreport.data.dataset import ITEM_KEYS, Collate, StudyDataset, _augment, select_views
from tests.fixtures.iu_tree import make_iu_kaggle


class CharTok:
    def encode(self, text):
        return [3 + (ord(c) % 50) for c in text[:20]]


@pytest.fixture
def iu_cache(tmp_path):
    make_iu_kaggle(tmp_path / "iu")
    (tmp_path / "iu" / "splits.csv").write_text("uid,split,r2gen_id\n1,train,\n2,train,\n3,train,\n")
    return prepare_cache("iu-xray", tmp_path / "iu", tmp_path / "c", size=64, workers=1)


def test_items_have_fixed_keys_and_collate_pads(iu_cache):
    ds = StudyDataset(iu_cache, "train", tokenizer=CharTok(),
                      label_fn=lambda texts: [{"Cardiomegaly": 1} for _ in texts])
    items = [ds[i] for i in range(len(ds))]
    assert all(tuple(it) == ITEM_KEYS for it in items)
    by_id = {it["study_id"]: it for it in items}
    assert by_id["1"]["images"].shape == (2, 64, 64) and by_id["1"]["view_ids"] == [0, 1]
    assert by_id["2"]["images"].shape[0] == 0 and by_id["2"]["input_ids"] == []  # no image, no findings
    assert by_id["1"]["labels"][2] == 1  # label_fn filled Cardiomegaly from the report
    batch = Collate(pad_id=0, bos_id=1, eos_id=2, image_size=32)(items)
    assert batch["images"].shape == (3, 2, 1, 32, 32) and batch["images"].max() <= 1
    assert batch["image_mask"].tolist() == [[True, True], [False, False], [False, False]]
    assert batch["has_text"].tolist() == [True, False, True]
    assert batch["input_ids"][0, 0] == 1 and batch["input_ids"][0, batch["attention_mask"][0].sum() - 1] == 2
    assert torch.isnan(batch["finding_targets"][1]).all()


def test_require_filters_and_dataloader(iu_cache):
    assert len(StudyDataset(iu_cache, "train", require="image")) == 1
    assert len(StudyDataset(iu_cache, "train", require="text")) == 2
    both = ConcatDataset([StudyDataset(iu_cache, "train"), StudyDataset(iu_cache, "train", require="image")])
    batches = list(DataLoader(both, batch_size=2, collate_fn=Collate(augment=True), num_workers=0))
    assert sum(len(b["study_id"]) for b in batches) == 4


def test_view_selection_prefers_frontal_then_lateral():
    assert select_views(["LATERAL", "PA", "AP"], 2) == [1, 0]
    assert select_views(["UNKNOWN", "UNKNOWN", "UNKNOWN"], 2) == [0, 1]


def test_augment_never_flips():
    x = torch.zeros(8, 1, 64, 64)
    x[..., 8:56, 4:24] = 1.0  # bright block on the left
    y = _augment(x)
    left, right = y[..., :, :32].mean(), y[..., :, 32:].mean()
    assert left > 5 * right
