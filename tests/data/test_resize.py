"""The NumPy model batch is PyTorch's collate, bit for bit (the lean runtime's preprocessing)."""

import numpy as np
import pytest

from cxreport.data.resize import image_batch, resize_bilinear_aa


def test_resize_matches_torch_interpolate_bit_for_bit():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    # Up (256 -> 320: the bundled model), down by < 2 (3-5 taps), by 3-5 (7-19 taps), odd sizes.
    for n_in, n_out in [(256, 320), (320, 320), (512, 320), (700, 320), (1000, 320), (300, 64), (97, 64), (37, 320)]:
        x = rng.integers(0, 256, (2, n_in, n_in), dtype=np.uint8).astype(np.float32) / np.float32(255)
        want = F.interpolate(torch.from_numpy(x).unsqueeze(1), size=(n_out, n_out), mode="bilinear",
                             align_corners=False, antialias=True)[:, 0].numpy()
        got = resize_bilinear_aa(x, n_out)
        assert got.dtype == np.float32 and got.shape == want.shape
        # x86 builds of PyTorch (the ones we ship with) agree exactly; others within a rounding.
        assert np.abs(got - want).max() <= 2e-7, (n_in, n_out)


def test_image_batch_is_the_training_collate():
    torch = pytest.importorskip("torch")
    from cxreport.data.dataset import Collate

    rng = np.random.default_rng(1)
    studies = [(rng.integers(0, 256, (2, 256, 256), dtype=np.uint8), [0, 1]),
               (rng.integers(0, 256, (1, 256, 256), dtype=np.uint8), [2])]
    got = image_batch(studies, 96, 2)
    want = Collate(image_size=96, max_views=2).images([(torch.from_numpy(v), ids) for v, ids in studies])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=2e-7)
    assert got[1].tolist() == [[True, True], [True, False]] and got[2].tolist() == [[0, 1], [2, 2]]


def test_image_batch_without_torch_shapes():
    imgs = np.full((3, 64, 64), 255, dtype=np.uint8)
    images, mask, view_ids = image_batch([(imgs, [0, 1, 2])], 32, 2)  # a third view is dropped
    assert images.shape == (1, 2, 1, 32, 32) and np.allclose(images, 1.0) and mask.all()
