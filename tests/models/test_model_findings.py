import math

import pytest
import torch

from cxreport.labels import CHEXPERT_LABELS
from cxreport.errors import InputError
from cxreport.models import create_model
from cxreport.models.finding_head import (NEGATIVE, POSITIVE, UNCERTAIN, UNKNOWN, dict_to_states, finding_loss,
                                          targets_to_states)

from tests.fixtures.tiny_models import VOCAB, make_batch


def test_uncertain_policy_in_the_finding_loss():
    logits = torch.zeros(1, 3)
    targets = torch.tensor([[1.0, -1.0, float("nan")]])
    rows = torch.tensor([True])
    ln2 = math.log(2)
    # ignore: only the positive counts; others: the uncertain one counts too (at logit 0 every BCE is ln 2).
    for policy in ("ignore", "positive", "negative"):
        assert finding_loss(logits, targets, rows, policy).item() == pytest.approx(ln2)
    logits = torch.tensor([[0.0, 2.0, 0.0]])
    pos = finding_loss(logits, targets, rows, "positive").item()
    neg = finding_loss(logits, targets, rows, "negative").item()
    ign = finding_loss(logits, targets, rows, "ignore").item()
    sp = torch.nn.functional.softplus
    assert pos == pytest.approx((ln2 + sp(torch.tensor(-2.0)).item()) / 2, rel=1e-5)
    assert neg == pytest.approx((ln2 + sp(torch.tensor(2.0)).item()) / 2, rel=1e-5)
    assert ign == pytest.approx(ln2)
    # Rows without an image or without any known target give a zero loss that still backpropagates.
    lg = torch.zeros(1, 3, requires_grad=True)
    zero = finding_loss(lg, targets, torch.tensor([False]), "ignore")
    zero.backward()
    assert zero.item() == 0.0 and lg.grad is not None


def test_uncertain_policy_from_the_config_changes_the_model_loss():
    batch = make_batch(views=1)
    batch["finding_targets"][:] = -1.0  # everything uncertain
    torch.manual_seed(0)
    ignore = create_model("tiny", **VOCAB)
    assert ignore(batch)["finding_loss"].item() == 0.0
    torch.manual_seed(0)
    positive = create_model("tiny", **VOCAB, findings={"uncertain": "positive"})
    assert positive(batch)["finding_loss"].item() > 0.0
    with pytest.raises(InputError, match="uncertain"):
        create_model("tiny", **VOCAB, findings={"uncertain": "maybe"})


def test_reports_only_batch_trains_the_decoder_on_label_tokens():
    model = create_model("tiny", **VOCAB)
    batch = make_batch(image=False)
    out = model(batch)
    assert out["finding_loss"].item() == 0.0 and out["lm_loss"].item() > 0
    out["loss"].backward()
    assert model.finding_tokens.state.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())
    gen = model.generate(findings={"Cardiomegaly": 1}, max_len=4)  # no image: oracle findings only
    assert gen[0]["finding_probs"] is None and gen[0]["finding_states"]["Cardiomegaly"] == "positive"


def test_images_without_text_train_only_the_finding_head():
    model = create_model("tiny", **VOCAB)
    batch = make_batch(views=2, text=False)
    out = model(batch)
    assert out["lm_loss"].item() == 0.0 and out["finding_loss"].item() > 0
    out["loss"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.decoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    batch.pop("input_ids"), batch.pop("attention_mask")  # a collate may also drop the text keys
    assert model(batch)["lm_loss"].item() == 0.0


def test_mixed_batch_rows_without_image_are_masked():
    model = create_model("tiny", **VOCAB)
    batch = make_batch(views=2)
    batch["image_mask"][1] = False
    batch["has_image"][1] = False
    out = model(batch)
    assert out["finding_logits"][1].abs().sum() == 0
    assert torch.isfinite(out["loss"])


def test_finding_states_from_targets_dicts_and_predictions():
    t = torch.tensor([[1.0, 0.0, -1.0, float("nan")]])
    assert targets_to_states(t).tolist() == [[POSITIVE, NEGATIVE, UNCERTAIN, UNKNOWN]]
    s = dict_to_states({"Edema": 1, "Cardiomegaly": "uncertain", "Fracture": 0}, list(CHEXPERT_LABELS))
    assert s[CHEXPERT_LABELS.index("Edema")] == POSITIVE
    assert s[CHEXPERT_LABELS.index("Cardiomegaly")] == UNCERTAIN
    assert s[CHEXPERT_LABELS.index("Fracture")] == NEGATIVE
    assert s[CHEXPERT_LABELS.index("No Finding")] == UNKNOWN
    with pytest.raises(InputError, match="unknown label"):
        dict_to_states({"Edemaa": 1}, list(CHEXPERT_LABELS))
    with pytest.raises(InputError, match="or 1/0/-1"):
        dict_to_states({"Edema": 7}, list(CHEXPERT_LABELS))


def test_oracle_findings_override_predictions_and_condition_the_decoder():
    torch.manual_seed(0)
    model = create_model("tiny", **VOCAB, findings={"threshold": 0.0, "below_threshold": "negative"}).eval()
    with torch.no_grad():
        model.decoder.head.weight.mul_(8.0)
    images = make_batch(b=2, views=1)["images"]
    predicted = model.generate(images=images, max_len=6)
    states = dict(predicted[0]["finding_states"])
    assert states.pop("No Finding") == "negative"  # CheXpert's rule: not beside positive findings
    assert set(states.values()) == {"positive"}  # threshold 0 -> all positive
    all_neg = {name: 0 for name in CHEXPERT_LABELS}
    oracle = model.generate(images=images, findings=[all_neg, None], max_len=6)
    assert set(oracle[0]["finding_states"].values()) == {"negative"}
    assert oracle[1]["finding_states"] == predicted[1]["finding_states"]
    # The memory differs only through the finding tokens, so the decoder sees the plan.
    tok, mask = model.encode_images(images)
    pos_mem, _ = model.memory(tok, mask, torch.full((2, 14), POSITIVE))
    neg_mem, _ = model.memory(tok, mask, torch.full((2, 14), NEGATIVE))
    assert not torch.allclose(pos_mem[:, :14], neg_mem[:, :14])
    torch.testing.assert_close(pos_mem[:, 14:], neg_mem[:, 14:])


def test_model_without_finding_conditioning_still_handles_text_only_rows():
    model = create_model("tiny", **VOCAB, findings={"condition": False})
    assert model.finding_tokens is None
    out = model(make_batch(image=False))
    assert torch.isfinite(out["loss"]) and out["lm_loss"] > 0
    assert model.generate(max_len=3)[0]["finding_states"] is None


def test_frozen_encoder_gets_no_gradients():
    model = create_model("tiny", **VOCAB, encoder={"freeze": True})
    model(make_batch())["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in model.encoder.parameters())


def test_parameter_groups_cover_every_trainable_parameter_once():
    model = create_model("tiny", **VOCAB)
    groups = model.parameter_groups(1e-3, weight_decay=0.05, encoder_lr_mult=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == trainable
    enc = {id(p) for p in model.encoder.parameters()}
    for g in groups:
        in_enc = id(g["params"][0]) in enc
        assert g["lr"] == pytest.approx(1e-4 if in_enc else 1e-3)
    torch.optim.AdamW(groups)  # accepted as is
    with pytest.raises(InputError, match="neither images nor input_ids"):
        model({})


def test_per_finding_thresholds_and_findings_only_memory():
    import torch

    from cxreport.models import create_model
    from cxreport.models.finding_head import POSITIVE, UNKNOWN

    m = create_model("tiny", vocab_size=30, findings={"thresholds": {"Cardiomegaly": 0.2}, "image_memory": False})
    probs = torch.full((1, 14), 0.3)
    states = m._states_for(None, probs, torch.tensor([True]), 1)
    card = m.labels.index("Cardiomegaly")
    assert states[0, card] == POSITIVE and (states[0, [i for i in range(14) if i != card]] == UNKNOWN).all()
    mem, mask = m.memory(torch.zeros(1, 5, m.cfg.d_model), torch.ones(1, 5, dtype=torch.bool), states)
    assert mem.shape[1] == 14  # the finding plan only: image tokens left out


def test_predicted_no_finding_yields_to_a_positive_finding():
    import torch

    from cxreport.models import create_model
    from cxreport.models.finding_head import NEGATIVE, POSITIVE

    m = create_model("tiny", vocab_size=30)
    probs = torch.full((2, 14), 0.1)
    nf, eff = m.labels.index("No Finding"), m.labels.index("Pleural Effusion")
    probs[:, nf] = 0.9
    probs[0, eff] = 0.8
    states = m._states_for(None, probs, torch.tensor([True, True]), 2)
    assert states[0, nf] == NEGATIVE and states[0, eff] == POSITIVE
    assert states[1, nf] == POSITIVE


def test_frontal_only_finding_head_ignores_the_lateral_view():
    import torch

    from cxreport.models import create_model

    torch.manual_seed(0)
    m = create_model("tiny", vocab_size=30, views={"head_views": "frontal"}).eval()
    x = torch.rand(1, 2, 1, 64, 64)
    y = x.clone()
    y[:, 1] = torch.rand(1, 1, 64, 64)  # another lateral film
    ids = torch.tensor([[0, 1]])
    a = m.generate(x, view_ids=ids, max_len=2)[0]["finding_probs"]
    b = m.generate(y, view_ids=ids, max_len=2)[0]["finding_probs"]
    assert all(abs(a[k] - b[k]) < 1e-6 for k in a)
    lat_only = m.generate(x[:, 1:], view_ids=torch.tensor([[1]]), max_len=2)[0]["finding_probs"]
    assert lat_only is not None  # no frontal view: the head reads what there is
