"""The finding-head fit on cached features learns per-finding signal (labels masked elsewhere),
and its snapshots are the fitted probe's own predictions."""

import numpy as np
import torch

from cxreport.models import create_model
from cxreport.models.probe import PooledProbe
from cxreport.training.head_fit import HeadFitConfig, fit_head, macro_auroc, predict_logits


def _data(n=240, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = np.full((n, 14), np.nan, dtype=np.float32)
    y[:, 0] = (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)  # No Finding
    y[:, 3] = (x[:, -1] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)  # Lung Opacity
    return x, y


def _make(dim):
    def make():
        model = create_model("effnet-small", vocab_size=20, pad_id=0, bos_id=1, eos_id=2, pretrained=False)
        return PooledProbe(model.cfg, dim)
    return make


def test_epoch_zero_is_the_probe_as_given():
    x, y = _data()
    make = _make(x.shape[1])
    probe, snaps = fit_head(make, x[:100], y[:100], np.zeros(100, dtype=int), HeadFitConfig(epochs=2), ["d"], (0, 2),
                            x[100:])
    torch.manual_seed(0)
    np.testing.assert_allclose(snaps[0], predict_logits(make(), x[100:]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(snaps[0], snaps[2])


def test_head_fit_learns_each_finding():
    x, y = _data()
    cfg = HeadFitConfig(epochs=30, batch_size=64, lr=1e-2)
    dom = np.zeros(len(x), dtype=int)
    probe, snaps = fit_head(_make(x.shape[1]), x[:160], y[:160], dom[:160], cfg, ["d"], (30,), x[160:])
    z = predict_logits(probe, x[160:])
    np.testing.assert_allclose(z, snaps[30], rtol=1e-5, atol=1e-5)
    assert macro_auroc(z, y[160:], [0, 3]) > 0.9


def test_feature_store_is_keyed_by_encoder_weights_and_size(tmp_path):
    """Cached pooled features are only reused for the same encoder weights and input size: an
    untrained encoder's features must never stand in for the trained one's."""
    from types import SimpleNamespace

    from cxreport.training.feature_cache import feature_path, pooled_features

    torch.manual_seed(0)
    cache = SimpleNamespace(meta={"fingerprint": "abc"},
                            images=np.random.default_rng(0).integers(0, 255, (3, 48, 48), dtype=np.uint8))
    a = create_model("effnet-small", vocab_size=20, pad_id=0, bos_id=1, eos_id=2, pretrained=False,
                     preprocess={"image_size": 64})
    b = create_model("effnet-small", vocab_size=20, pad_id=0, bos_id=1, eos_id=2, pretrained=False,
                     preprocess={"image_size": 96})
    b.encoder.load_state_dict(a.encoder.state_dict())
    pa, pb = feature_path(tmp_path, cache, a), feature_path(tmp_path, cache, b)
    assert pa != pb  # same weights, other size
    with torch.no_grad():
        b.encoder.net._conv_head.weight.mul_(2.0)
        b.cfg.preprocess.image_size = 64
    assert feature_path(tmp_path, cache, b) != pa  # same size, other weights
    feats = pooled_features(a.encoder, cache, pa, 64)
    assert feats.shape == (3, a.encoder.out_dim) and pa.is_file()
    a.encoder.eval()
    x = torch.nn.functional.interpolate(torch.from_numpy(cache.images).unsqueeze(1).float() / 255, size=(64, 64),
                                        mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        np.testing.assert_allclose(feats, a.encoder(x).pooled.numpy(), rtol=1e-3, atol=1e-4)
    assert a.encoder.runtime is None  # the runtime it borrowed for speed is handed back
