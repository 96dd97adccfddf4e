"""IU X-Ray's manual MeSH codes -> CheXpert-14 reference labels (for validating the labeler).

Each MeSH entry is ``Head/modifier/...`` (e.g. ``Opacity/lung/base/left``); every entry is a
positive finding. The mapping follows CheXpert's definitions, decided before looking at labeler
scores: Lung Opacity covers opacities, densities, infiltrates, airspace disease and lung scarring
(CheXpert's opacity lexicon includes scarring/reticulation) but not the more specific children
(edema, consolidation, atelectasis, lesions), which CheXpert labels separately; granulomas are not
Lung Lesions (CheXpert's lesion lexicon is nodule/mass/tumour); pulmonary congestion and heart
failure count as Edema, as in CheXpert; Support Devices are lines, tubes, catheters, pacemakers,
stents and implants, not ``Surgical Instruments`` (IU codes surgical clips and sternotomy wires so).
"""

from __future__ import annotations

from cxreport.labels import CHEXPERT_LABELS

_LUNG_SITES = ("lung", "pulmonary", "retrocardiac", "lingula", "lobe", "apex", "base", "hilum")
_NOT_LUNG = ("rib", "spine", "vertebra", "breast", "abdomen", "soft tissue", "mediastinum", "paratracheal",
             "shoulder", "clavicle", "diaphragm", "costophrenic", "heart", "pleura", "thorax/")

# head term -> observation, for heads that map whatever their modifiers
_HEADS = {
    "Cardiomegaly": "Cardiomegaly",
    "Pulmonary Edema": "Edema",
    "Pulmonary Congestion": "Edema",
    "Heart Failure": "Edema",
    "Consolidation": "Consolidation",
    "Pneumonia": "Pneumonia",
    "Pulmonary Atelectasis": "Atelectasis",
    "Pneumothorax": "Pneumothorax",
    "Hydropneumothorax": "Pneumothorax",
    "Hemopneumothorax": "Pneumothorax",
    "Pleural Effusion": "Pleural Effusion",
    "Hemothorax": "Pleural Effusion",
    "Fractures, Bone": "Fracture",
    "Infiltrate": "Lung Opacity",
    "Airspace Disease": "Lung Opacity",
    "Lung Diseases, Interstitial": "Lung Opacity",
    "Pulmonary Fibrosis": "Lung Opacity",
    "Mass": "Lung Lesion",
    "Catheters, Indwelling": "Support Devices",
    "Implanted Medical Device": "Support Devices",
    "Tube, Inserted": "Support Devices",
    "Stents": "Support Devices",
    "Medical Device": "Support Devices",
}


def _is_lung_site(mods: list[str]) -> bool:
    text = "/".join(mods).lower() + "/"
    if any(n in text for n in _NOT_LUNG):
        return False
    return not mods or any(s in text for s in _LUNG_SITES) or all(
        m in ("left", "right", "bilateral", "mild", "small", "multiple", "patchy", "focal", "diffuse") for m in mods
    )


def mesh_term_to_labels(term: str) -> set[str]:
    """Observations one MeSH entry asserts (empty for findings outside CheXpert-14)."""
    parts = [p.strip() for p in term.split("/") if p.strip()]
    if not parts:
        return set()
    head, mods = parts[0], parts[1:]
    low = [m.lower() for m in mods]
    if head in _HEADS:
        if head == "Mass" and not _is_lung_site(mods):
            return set()
        return {_HEADS[head]}
    if head in ("Opacity", "Density"):
        return {"Lung Opacity"} if _is_lung_site(mods) else set()
    if head == "Cicatrix":
        if any("pleura" in m for m in low):
            return {"Pleural Other"}
        return {"Lung Opacity"} if _is_lung_site(mods) else set()
    if head == "Markings" and "interstitial" in low:
        return {"Lung Opacity"}
    if head in ("Nodule", "Cavitation"):
        # "Nodule/thorax/left", "Nodule/heart/left" are lung nodules projecting there; only
        # skeletal and soft-tissue sites are not.
        skeletal = ("rib", "spine", "vertebra", "breast", "soft tissue", "abdomen", "shoulder", "clavicle", "sternum")
        return set() if any(k in "/".join(low) for k in skeletal) else {"Lung Lesion"}
    if head == "Cardiac Shadow" and "enlarged" in low:
        return {"Cardiomegaly"}
    if head == "Heart" and "enlarged" in low:
        return {"Cardiomegaly"}
    if head == "Mediastinum" and any(m in low for m in ("enlarged", "prominent", "widened", "wide")):
        return {"Enlarged Cardiomediastinum"}
    if head in ("Thickening", "Pleura", "Calcinosis") and any("pleura" in m for m in [head.lower(), *low]):
        return {"Pleural Other"}
    return set()


def mesh_to_labels(mesh: str) -> dict[str, int] | None:
    """CheXpert-14 reference from a ``;``-separated MeSH cell: 1 = coded, absent = not coded.

    ``None`` when the study was not indexed (``No Indexing``): it has no reference. No Finding
    follows CheXpert's rule: 1 when nothing but Support Devices is positive.
    """
    terms = [t.strip() for t in (mesh or "").split(";") if t.strip()]
    if not terms or any(t.startswith("No Indexing") for t in terms):
        return None
    labels: dict[str, int] = {}
    for term in terms:
        if term.lower() == "normal":
            continue
        for obs in mesh_term_to_labels(term):
            labels[obs] = 1
    if not any(k != "Support Devices" for k in labels):
        labels["No Finding"] = 1
    assert set(labels) <= set(CHEXPERT_LABELS)
    return labels
