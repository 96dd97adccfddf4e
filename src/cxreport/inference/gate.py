"""The input gate: is this a chest radiograph, which way up is it, which view is it?

Runs before any finding is reported. Cheap pixel checks (colour, blank, noise) look at the decoded
image; orientation (0/90/180/270 degrees) is a linear classifier on a 16 x 16 thumbnail, trained
by rotating our own films (never by flipping them); the view check compares a film with its mirror
image (frontal films are nearly left-right symmetric, laterals are not; the mirror is only
measured, never passed on); the learned out-of-distribution score is a Mahalanobis distance, in a
PCA space, of the encoder's pooled features to the training radiographs, its threshold set on
validation radiographs. The learned parts live beside a checkpoint in gate.safetensors + gate.json
(``scripts/fit_gate.py`` makes them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cxreport.data.images import colour_fraction  # noqa: F401  (re-exported for scripts)
from cxreport.errors import InputError

GATE_FILES = ("gate.json", "gate.safetensors")
HINT = "cxreport reads chest radiographs only; send the X-ray film itself (PNG, JPEG or DICOM)"


class NotARadiograph(InputError):
    """An input the gate refuses; the message names the image and why."""

    def __init__(self, name: str, why: str):
        super().__init__(f"{name}: {why}; {HINT}")
        self.name, self.why = name, why


@dataclass
class GateConfig:
    thumb: int = 16
    max_colour_fraction: float = 0.02  # share of strongly coloured pixels a film may have
    colour_delta: int = 40  # max - min channel (0..255) that counts as "strongly coloured"
    min_std: float = 6.0  # grey-level spread below which an image is blank
    min_neighbour_corr: float = 0.6  # adjacent-pixel correlation below which it is noise
    orient_min_prob: float = 0.9  # rotate back only when this sure
    symmetry_threshold: float = 0.0  # mirror correlation above which an untagged film is frontal
    view_check: bool = True  # False when the symmetry check did not separate the validation views
    ood_threshold: float = float("inf")
    ood_components: int = 64
    metrics: dict = field(default_factory=dict)


@dataclass
class GateParams:
    config: GateConfig
    orient_w: np.ndarray  # thumb^2 x 4
    orient_b: np.ndarray  # 4
    ood_mean: np.ndarray  # C
    ood_basis: np.ndarray  # K x C (principal axes)
    ood_var: np.ndarray  # K (variance along each axis)
    ood_resid_var: float = 1.0  # mean variance off the K axes

    def save(self, folder) -> None:
        from safetensors.numpy import save_file

        from cxreport.fsio import atomic_path, atomic_write_json

        folder = Path(folder)
        arrays = {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
                  for k in ("orient_w", "orient_b", "ood_mean", "ood_basis", "ood_var")}
        with atomic_path(folder / "gate.safetensors") as tmp:
            save_file(arrays, str(tmp))
        atomic_write_json(folder / "gate.json", {**asdict(self.config), "ood_resid_var": self.ood_resid_var})

    @classmethod
    def load(cls, folder) -> "GateParams | None":
        folder = Path(folder)
        if not all((folder / f).is_file() for f in GATE_FILES):
            return None
        from safetensors.numpy import load_file

        meta = json.loads((folder / "gate.json").read_text())
        resid = float(meta.pop("ood_resid_var", 1.0))
        arrays = load_file(str(folder / "gate.safetensors"))
        return cls(config=GateConfig(**meta), ood_resid_var=resid,
                   **{k: arrays[k].astype(np.float32) for k in arrays})


# ---- cheap pixel checks ------------------------------------------------------------------
def pixel_stats(gray: np.ndarray) -> dict:
    """Grey-level spread and adjacent-pixel correlation of a letterboxed uint8 film."""
    x = gray.astype(np.float32)
    a, b = x[:, :-1].ravel(), x[:, 1:].ravel()
    sa, sb = a.std(), b.std()
    corr = float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else 0.0
    return {"std": float(x.std()), "neighbour_corr": corr}


def thumbnail(gray: np.ndarray, side: int) -> np.ndarray:
    """Block-mean thumbnail, standardised per image (side must divide the film's size)."""
    s = gray.shape[0]
    x = gray.astype(np.float32).reshape(side, s // side, side, s // side).mean((1, 3)).ravel()
    return (x - x.mean()) / (x.std() + 1e-6)


def mirror_symmetry(gray: np.ndarray, side: int = 32) -> float:
    """Correlation of a film's thumbnail with its left-right mirror (measured, never used as input)."""
    s = gray.shape[0]
    x = gray.astype(np.float32).reshape(side, s // side, side, s // side).mean((1, 3))
    a, b = x.ravel(), x[:, ::-1].ravel()
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


class Gate:
    def __init__(self, params: GateParams):
        self.p = params
        self.cfg = params.config

    def check_pixels(self, gray: np.ndarray, name: str, colour: float = 0.0) -> None:
        """Refuse colour pictures, blank images and noise (``gray`` letterboxed uint8)."""
        c = self.cfg
        if colour > c.max_colour_fraction:
            raise NotARadiograph(name, f"a colour picture ({colour:.0%} of its pixels are coloured)")
        st = pixel_stats(gray)
        if st["std"] < c.min_std:
            raise NotARadiograph(name, "blank or nearly uniform (no image content)")
        if st["neighbour_corr"] < c.min_neighbour_corr:
            raise NotARadiograph(name, f"looks like noise, text or line art, not a film (adjacent-pixel correlation "
                                       f"{st['neighbour_corr']:.2f})")

    def orientation(self, gray: np.ndarray) -> tuple[int, float]:
        """(k, probability): the film is rotated by k * 90 degrees counter-clockwise."""
        z = thumbnail(gray, self.cfg.thumb) @ self.p.orient_w + self.p.orient_b
        e = np.exp(z - z.max())
        prob = e / e.sum()
        k = int(prob.argmax())
        return k, float(prob[k])

    def upright(self, gray: np.ndarray) -> tuple[np.ndarray, int]:
        """The film turned upright (rotation only, never a flip) and the k it was turned back by."""
        k, prob = self.orientation(gray)
        if k == 0 or prob < self.cfg.orient_min_prob:
            return gray, 0
        return np.ascontiguousarray(np.rot90(gray, -k)), k

    def guess_view(self, gray: np.ndarray) -> str:
        return "frontal" if mirror_symmetry(gray) >= self.cfg.symmetry_threshold else "lateral"

    def ood_distance(self, pooled: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance per row (N x C pooled encoder features), in the PCA space
        of the training films plus the residual off it; divided by C so ~1 is typical."""
        d = np.asarray(pooled, dtype=np.float32) - self.p.ood_mean
        proj = d @ self.p.ood_basis.T
        inside = (proj ** 2 / self.p.ood_var).sum(1)
        resid = (d ** 2).sum(1) - (proj ** 2).sum(1)
        return (inside + np.maximum(resid, 0) / self.p.ood_resid_var) / d.shape[1]

    def check_features(self, pooled: np.ndarray, names: list[str]) -> None:
        for name, dist in zip(names, self.ood_distance(pooled)):
            if dist > self.cfg.ood_threshold:
                raise NotARadiograph(name, f"does not look like a chest radiograph (distance {dist:.2f} to the "
                                           f"training films; the limit is {self.cfg.ood_threshold:.2f})")


def fit_ood(pooled: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, basis K x C, variances K, mean residual variance) of training films' features."""
    x = np.asarray(pooled, dtype=np.float64)
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s ** 2 / max(1, len(x) - 1)
    resid = float(var[k:].mean()) if len(var) > k else float(var[-1])
    return mean.astype(np.float32), vt[:k].astype(np.float32), np.maximum(var[:k], 1e-8).astype(np.float32), max(resid, 1e-8)


def fit_orientation(films: np.ndarray, side: int, l2: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on thumbnails of ``films`` (N x S x S uint8, upright),
    each shown at 0/90/180/270 degrees: self-supervised, no labels needed."""
    import torch
    import torch.nn.functional as F

    xs, ys = [], []
    for k in range(4):
        xs += [thumbnail(np.rot90(f, k), side) for f in films]
        ys += [k] * len(films)
    x, y = torch.tensor(np.stack(xs)), torch.tensor(ys)
    w = torch.zeros(side * side, 4, requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def decide_view(given: str | None, tag: str | None, gray: np.ndarray, index: int, gate: "Gate | None",
                parse) -> tuple[str, str]:
    """(frontal | lateral | unknown, how it was decided) for one image: what the caller said
    (``--view``, manifest, form field), else the DICOM tag, else the gate's image check, else the
    image's position (first frontal, second lateral). ``parse`` turns a view code into a group."""
    if given is not None and str(given).strip():
        return parse(given), "given"
    if tag:
        from cxreport.labels import view_group

        group = view_group(tag)
        if group != "unknown":
            return group, "dicom"
    if gate is not None and gate.cfg.view_check:
        return gate.guess_view(gray), "image check"
    return ("frontal" if index == 0 else "lateral" if index == 1 else "unknown"), "position"


def pick_views(views: list[str], max_views: int) -> list[int]:
    """Indices of the images a study uses: the first frontal and the first lateral (then others
    in order while the model takes more views)."""
    order = []
    for group in ("frontal", "lateral"):
        if group in views:
            order.append(views.index(group))
    if not order:
        order.append(0)
    order += [i for i in range(len(views)) if i not in order and views[i] == "unknown"]
    return sorted(order[:max_views], key=lambda i: (views[i] != "frontal", i))
