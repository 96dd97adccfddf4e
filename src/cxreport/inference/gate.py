"""The input gate: is this a chest radiograph, which way up is it, which view is it?

Runs before any finding is reported. Cheap pixel checks (colour, blank, noise) look at the decoded
image; orientation (0/90/180/270 degrees) is a linear classifier on a 16 x 16 thumbnail, trained
by rotating our own films (never by flipping them); inverted greys (white lungs: a MONOCHROME1
film exported without its look-up table, a negative) are told by a linear classifier on a 16 x 16
thumbnail of the film without its letterbox borders, trained on our films and their negatives at
every rotation (so a rotated film is not taken for a negative); the view check compares a film with its mirror
image (frontal films are nearly left-right symmetric, laterals are not; the mirror is only
measured, never passed on); the learned out-of-distribution score is a Mahalanobis distance, in a
PCA space, of the encoder's pooled features to the training radiographs, its threshold set on
validation radiographs. The learned parts live beside a checkpoint in gate.safetensors + gate.json
(``cxreport fit-gate`` makes them: ``training.gate_fit``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cxreport.data.images import colour_fraction  # noqa: F401  (re-exported for scripts)
from cxreport.errors import InputError

GATE_FILES = ("gate.json", "gate.safetensors")
HINT = ("cxreport reads chest radiographs only; send the X-ray film itself (PNG, JPEG or DICOM), or, if it is one, "
        "read it anyway with --skip-gate (Python skip_gate=True, HTTP form field skip_gate=true)")


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
    invert_min_prob: float = 0.5  # turn the greys back at this probability of a negative
    symmetry_threshold: float = 0.0  # mirror correlation above which an untagged film is frontal
    view_check: bool = True  # False when the symmetry check did not separate the validation views
    ood_threshold: float = float("inf")
    ood_components: int = 64
    ood_groups: list = field(default_factory=list)  # names of the OOD model's groups of training films
    ood_features: str = "raw"  # "l2": pooled features scaled to unit length before the distance
    metrics: dict = field(default_factory=dict)


@dataclass
class GateParams:
    """Learned parts. The OOD model has one PCA-Gaussian per group of training films (e.g. adult
    and pediatric films: one Gaussian over both would be too wide for either); a film's distance is
    its smallest over the groups, each divided by that group's own limit (``ood_scale``)."""

    config: GateConfig
    orient_w: np.ndarray  # thumb^2 x 4
    orient_b: np.ndarray  # 4
    ood_mean: np.ndarray  # S x C (one row per group; a single C vector is one group)
    ood_basis: np.ndarray  # S x K x C (principal axes)
    ood_var: np.ndarray  # S x K (variance along each axis)
    ood_resid_var: np.ndarray | float = 1.0  # S: mean variance off the K axes
    ood_scale: np.ndarray | None = None  # S: each group's limit; distances are divided by it
    invert_w: np.ndarray | None = None  # thumb^2 x 8: 4 rotations x (upright greys, inverted greys)
    invert_b: np.ndarray | None = None  # 8

    def __post_init__(self):
        self.ood_mean = np.atleast_2d(np.asarray(self.ood_mean, dtype=np.float32))
        self.ood_basis = np.asarray(self.ood_basis, dtype=np.float32).reshape(len(self.ood_mean), -1,
                                                                                self.ood_mean.shape[1])
        self.ood_var = np.asarray(self.ood_var, dtype=np.float32).reshape(len(self.ood_mean), -1)
        self.ood_resid_var = np.broadcast_to(np.asarray(self.ood_resid_var, dtype=np.float32),
                                             (len(self.ood_mean),)).copy()
        scale = np.ones(len(self.ood_mean)) if self.ood_scale is None else self.ood_scale
        self.ood_scale = np.broadcast_to(np.asarray(scale, dtype=np.float32), (len(self.ood_mean),)).copy()

    def save(self, folder) -> None:
        from safetensors.numpy import save_file

        from cxreport.fsio import atomic_path, atomic_write_json

        folder = Path(folder)
        arrays = {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
                  for k in ("orient_w", "orient_b", "ood_mean", "ood_basis", "ood_var", "ood_resid_var", "ood_scale",
                            "invert_w", "invert_b") if getattr(self, k) is not None}
        with atomic_path(folder / "gate.safetensors") as tmp:
            save_file(arrays, str(tmp))
        atomic_write_json(folder / "gate.json", asdict(self.config))

    @classmethod
    def load(cls, folder) -> "GateParams | None":
        folder = Path(folder)
        if not all((folder / f).is_file() for f in GATE_FILES):
            return None
        from safetensors.numpy import load_file

        meta = json.loads((folder / "gate.json").read_text())
        resid = meta.pop("ood_resid_var", 1.0)  # gates written before groups kept it here
        arrays = {k: v.astype(np.float32) for k, v in load_file(str(folder / "gate.safetensors")).items()}
        arrays.setdefault("ood_resid_var", resid)
        return cls(config=GateConfig(**meta), **arrays)


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


def film_thumbnail(film: np.ndarray, side: int) -> np.ndarray:
    """Box-mean thumbnail of a film without its letterbox borders, squeezed to side x side and
    standardised per image (the polarity check's input)."""
    from PIL import Image

    x = np.asarray(Image.fromarray(np.ascontiguousarray(film)).resize((side, side), Image.Resampling.BOX),
                   dtype=np.float32).ravel()
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

    def check_pixels(self, gray: np.ndarray, name: str, colour: float = 0.0,
                     original: np.ndarray | None = None) -> None:
        """Refuse colour pictures, blank images and noise (``gray`` letterboxed uint8). ``original``
        (the decoded image before letterboxing) only words the refusal: shrinking fine-grained
        noise averages it to a flat grey, which is noise all the same, not a blank image."""
        c = self.cfg
        if colour > c.max_colour_fraction:
            raise NotARadiograph(name, f"a colour picture ({colour:.0%} of its pixels are coloured)")
        st = pixel_stats(gray)
        if st["std"] < c.min_std:
            noise = _noise_stats(original) if original is not None else None
            if noise is not None and noise["std"] >= 1.0 and noise["neighbour_corr"] < c.min_neighbour_corr:
                raise NotARadiograph(name, f"looks like random noise, not a film (adjacent-pixel correlation "
                                           f"{noise['neighbour_corr']:.2f} at full size)")
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

    def inverted_prob(self, film: np.ndarray) -> float | None:
        """Probability that a film (uint8, without its letterbox borders) shows inverted greys;
        None for a gate fitted before the polarity check existed."""
        if self.p.invert_w is None:
            return None
        z = film_thumbnail(film, self.cfg.thumb) @ self.p.invert_w + self.p.invert_b
        e = np.exp(z - z.max())
        return float(e[4:].sum() / e.sum())

    def upright(self, gray: np.ndarray) -> tuple[np.ndarray, int]:
        """The film turned upright (rotation only, never a flip) and the k it was turned back by."""
        k, prob = self.orientation(gray)
        if k == 0 or prob < self.cfg.orient_min_prob:
            return gray, 0
        return np.ascontiguousarray(np.rot90(gray, -k)), k

    def guess_view(self, gray: np.ndarray) -> str:
        return "frontal" if mirror_symmetry(gray) >= self.cfg.symmetry_threshold else "lateral"

    def ood_distance(self, pooled: np.ndarray) -> np.ndarray:
        """Per row (N x C pooled encoder features): the squared Mahalanobis distance to the nearest
        group of training films, in that group's PCA space plus the residual off it, divided by C
        and by the group's own limit (``ood_scale``)."""
        return self.nearest_group(pooled)[0]

    def nearest_group(self, pooled: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """(``ood_distance`` per row, the name of the nearest group per row: the population whose
        calibration the film's findings use; None for a gate whose groups have no names)."""
        p = self.p
        x = ood_input(pooled, self.cfg.ood_features)
        dists = np.full((len(p.ood_mean), len(x)), np.inf, dtype=np.float32)
        for g in range(len(p.ood_mean)):
            d = x - p.ood_mean[g]
            proj = d @ p.ood_basis[g].T
            inside = (proj ** 2 / p.ood_var[g]).sum(1)
            resid = (d ** 2).sum(1) - (proj ** 2).sum(1)
            dists[g] = (inside + np.maximum(resid, 0) / p.ood_resid_var[g]) / d.shape[1] / p.ood_scale[g]
        names = list(self.cfg.ood_groups) if len(self.cfg.ood_groups) == len(p.ood_mean) else [None] * len(p.ood_mean)
        best = dists.argmin(0) if len(x) else np.zeros(0, dtype=int)
        return dists.min(0) if len(x) else np.zeros(0, np.float32), [names[g] for g in best]

    def check_features(self, pooled: np.ndarray, names: list[str]) -> None:
        for name, dist in zip(names, self.ood_distance(pooled)):
            if dist > self.cfg.ood_threshold:
                raise NotARadiograph(name, f"does not look like a chest radiograph (distance {dist:.3f} to the "
                                           f"training films; the limit is {self.cfg.ood_threshold:.2f})")


def ood_input(pooled: np.ndarray, features: str = "raw") -> np.ndarray:
    """The vectors the OOD model sees. "l2" divides each by its length: the direction of the
    features tells films from other images far better than their size (measured: the nearest
    non-radiograph went from 1.05x to 1.8x the limit, see training/gate_fit.py)."""
    x = np.asarray(pooled, dtype=np.float32)
    if features == "l2":
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if features != "raw":
        raise ValueError(f"unknown gate ood_features {features!r}; choose raw or l2")
    return x


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
    xs, ys = [], []
    for k in range(4):
        xs += [thumbnail(np.rot90(f, k), side) for f in films]
        ys += [k] * len(films)
    return fit_softmax(np.stack(xs), np.array(ys), 4, l2, 300)


def fit_polarity(films: list[np.ndarray], side: int, l2: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression over 8 classes, the 4 rotations of ``films`` (uint8, upright,
    without letterbox borders) and of their negatives (255 - film). The rotations make the
    polarity call the same at any rotation (the data are closed under rotation, so the convex
    fit is too): the check runs before the film is turned upright."""
    xs, ys = [], []
    for k in range(4):
        for neg in (0, 1):
            xs += [film_thumbnail(np.rot90(255 - f if neg else f, k), side) for f in films]
            ys += [k + 4 * neg] * len(films)
    return fit_softmax(np.stack(xs), np.array(ys), 8, l2, 500)


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, l2: float, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights D x classes, biases) of an L2-penalised multinomial logistic regression (LBFGS)."""
    import torch
    import torch.nn.functional as F

    xt, yt = torch.tensor(x), torch.tensor(y)
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xt @ w + b, yt) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def _noise_stats(image: np.ndarray, max_rows: int = 512) -> dict:
    """``pixel_stats`` of a decoded image, on at most ``max_rows`` evenly spaced rows (adjacent
    pixels stay adjacent along each row), so a 4k image costs little."""
    step = max(1, image.shape[0] // max_rows)
    return pixel_stats(np.asarray(image)[::step])


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
