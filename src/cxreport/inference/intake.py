"""One study's images through the input gate's pixel-level part, before the model sees them.

Each image is decoded (``inputs.as_gray``) and letterboxed as the training cache did it, then the
gate (when the model has one) refuses colour pictures, blank images and noise, turns inverted greys
back and rotated films upright, and tells views apart; the learned out-of-distribution score comes
later, from the encoder's features (``Pipeline.run``). Every message names the image.

``skip_gate`` reads the images as given: nothing is refused, turned or inverted, and each thing
the gate would have done is a warning instead (the learned score's refusal included, later).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cxreport.data.images import letterbox, letterbox_box
from cxreport.inference.gate import Gate, NotARadiograph, decide_view, pick_views
from cxreport.inference.inputs import as_gray, view_name
from cxreport.labels import VIEW_IDS

SKIPPED = ("the input check was skipped on request (skip_gate): the images were read as given, without being "
           "checked to be chest radiographs this model can read")


@dataclass
class Intake:
    """The letterboxed films a study uses, what each image was, and what was done to it."""

    films: list[np.ndarray]  # the used views, frontal first (uint8 S x S)
    view_ids: list[int]  # theirs (labels.VIEW_IDS), in the same order
    views: list[dict]  # every image: index, view, view_from, source, height, width, turned_upright_degrees,
    #                    greys_inverted, used
    warnings: list[str] = field(default_factory=list)


def take_in(images: list, views: list, names, *, gate: Gate | None, size: int, max_pixels: int, min_side: int,
            max_views: int, skip_gate: bool = False) -> Intake:
    """``images`` (paths, bytes or arrays) with a view (or None) each -> an ``Intake``. An image is
    named ``names[i]`` in messages, else by its file name, else 'image i'."""
    films, infos, warnings = [], [], []
    for i, (item, view) in enumerate(zip(images, views)):
        given = names[i] if names is not None and i < len(names) and names[i] else None
        label = given or f"image {i + 1}"
        gray, (h, w), source, facts = as_gray(item, label, max_pixels, min_side, size)
        tag = given or (source if source not in ("bytes", "array") else label)
        film, info = _through_gate(gray, tag, view, facts, i, gate, size, skip_gate, warnings)
        films.append(film)
        infos.append({"index": i, "view": info["view"], "view_from": info["view_from"], "source": tag,
                      "height": int(h), "width": int(w), "turned_upright_degrees": info["turned"],
                      "greys_inverted": info["inverted"]})
    use = pick_views([v["view"] for v in infos], max_views)
    for v in infos:
        v["used"] = v["index"] in use
    if len(use) < len(infos):
        warnings.append(f"{len(infos)} images: read " + " and ".join(f"{infos[i]['source']} ({infos[i]['view']})"
                                                                   for i in use) + "; the others were not used")
    if skip_gate and gate is not None:
        warnings.insert(0, SKIPPED)
    return Intake([films[i] for i in use], [VIEW_IDS[infos[i]["view"]] for i in use], infos, warnings)


def _through_gate(gray, tag: str, view, facts: dict, i: int, gate: Gate | None, size: int, skip_gate: bool,
                  warnings: list) -> tuple[np.ndarray, dict]:
    """One image: pixel checks, greys, view, orientation. (letterboxed film, what was decided)."""
    film = letterbox(gray, size)
    inverted, turned = False, 0
    parse = lambda v: view_name(v, i)  # noqa: E731
    if gate is not None:
        try:
            gate.check_pixels(film, tag, facts["colour"], original=gray)
        except NotARadiograph as exc:
            if not skip_gate:
                raise
            warnings.append(would_have(exc))
        top, left, nh, nw = letterbox_box(*gray.shape, size)
        p = gate.inverted_prob(film[top:top + nh, left:left + nw])  # the film without its black borders
        if p is not None and p >= gate.cfg.invert_min_prob:
            look = ("its greys look inverted (white lungs, as a negative or a MONOCHROME1 film shown without its "
                    "look-up table)")
            if skip_gate:
                warnings.append(f"{tag}: {look}; read as given (skip_gate)")
            else:
                film, inverted = letterbox(255 - gray, size), True  # the black borders stay black
                warnings.append(f"{tag}: {look}; inverted back before reading")
    name, how = decide_view(view, facts["view"], film, i, gate, parse)
    # The orientation check learned from frontal films only: it called 3 of IU's 10 upright
    # laterals upside down, so a film known to be lateral (given, tagged, or second by
    # position) is never turned; the image check itself needs the film upright first.
    if gate is not None and (name != "lateral" or how == "image check"):
        upright, k = gate.upright(film)
        if k and skip_gate:
            warnings.append(f"{tag}: looks rotated by {90 * k} degrees; read as given (skip_gate)")
        elif k:
            film, turned = upright, 90 * k
            warnings.append(f"{tag}: was rotated by {turned} degrees; turned upright before reading")
            if how == "image check":
                name, how = decide_view(view, facts["view"], film, i, gate, parse)
    return film, {"view": name, "view_from": how, "inverted": inverted, "turned": turned}


def would_have(refusal: NotARadiograph) -> str:
    """The warning an image read with ``skip_gate`` carries instead of its refusal."""
    return f"{refusal.name} would have been refused (read anyway, skip_gate): {refusal.why}"
