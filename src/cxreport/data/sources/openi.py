"""IU X-Ray in its original Open-i form: ecgen-radiology/*.xml (or the .tgz) + NLMCXR_png/.

Each XML is one study: AbstractText FINDINGS / IMPRESSION / INDICATION / COMPARISON, MeSH terms and
``parentImage`` ids (``CXR1_1_IM-0001-4001`` → ``NLMCXR_png/CXR1_1_IM-0001-4001.png``). Open-i
does not say which image is frontal; a Kaggle ``indiana_projections.csv`` next to the data, when
present, supplies the views.
"""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

from cxreport.data.sources import register_source
from cxreport.data.sources._common import (
    assign_split, find_file, log, read_split_file, require_dir,
)
from cxreport.fsio import read_csv
from cxreport.data.study import Study, normalise_ws
from cxreport.errors import InputError


def _iter_xml(root: Path):
    """Yield (name, bytes) for every report, from an extracted folder or from the tarball(s)."""
    folder = root / "ecgen-radiology"
    if folder.is_dir():
        for p in sorted(folder.glob("*.xml")):
            yield p.name, p.read_bytes()
        return
    tars = sorted(root.glob("NLMCXR_reports*.tgz")) + sorted(root.glob("NLMCXR_reports*.tar.gz"))
    if not tars:
        raise InputError(f"{root}: no ecgen-radiology/ folder and no NLMCXR_reports*.tgz "
                         "(download them with `cxreport data download openi`)")
    with tarfile.open(tars[0]) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            if m.isfile() and m.name.endswith(".xml"):
                yield Path(m.name).name, tf.extractfile(m).read()


def parse_report_xml(data: bytes, name: str = "") -> dict:
    try:
        doc = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputError(f"{name}: not valid XML ({exc})") from None
    sections = {}
    for el in doc.iter("AbstractText"):
        label = (el.get("Label") or "").upper()
        sections[label] = normalise_ws("".join(el.itertext()))
    uid_el = doc.find("uId")
    uid = (uid_el.get("id") if uid_el is not None else "") or Path(name).stem
    mesh = doc.find("MeSH")
    major = [normalise_ws(e.text) for e in mesh.findall("major")] if mesh is not None else []
    auto = [normalise_ws(e.text) for e in mesh.findall("automatic")] if mesh is not None else []
    images = [e.get("id") for e in doc.findall("parentImage") if e.get("id")]
    return {"uid": re.sub(r"^CXR", "", uid), "findings": sections.get("FINDINGS", ""),
            "impression": sections.get("IMPRESSION", ""), "indication": sections.get("INDICATION", ""),
            "comparison": sections.get("COMPARISON", ""), "mesh_major": major, "mesh_automatic": auto,
            "images": images}


def _kaggle_views(root: Path, projections_file) -> dict[str, str]:
    """Open-i image id → Frontal/Lateral via Kaggle names (``1_IM-0001-4001.dcm.png``)."""
    p = find_file(root, "indiana_projections.csv", projections_file)
    if p is None:
        return {}
    views = {}
    for r in read_csv(p, ["uid", "filename", "projection"]):
        m = re.match(r"(\d+)_(IM-\d+-\d+)", r["filename"])
        if m:
            views[(m.group(1), m.group(2))] = r["projection"].strip().upper()
    return views


@register_source("iu-xray-openi")
def load(root, split_file=None, projections_file=None, images_dir=None, seed: int = 42, **_) -> list[Study]:
    """IU X-Ray studies of the Open-i release under ``root``.

    Options:
      split_file: uid,split CSV (default: splits.csv in root or its parent, else a seeded split)
      projections_file: Kaggle indiana_projections.csv giving each image's view (default: found in root or its parent)
      images_dir: PNG folder (default: root/NLMCXR_png)
      seed: seed of the split when there is no split file
    """
    root = require_dir(root, "Open-i folder with ecgen-radiology/ or NLMCXR_reports.tgz")
    splits = read_split_file(find_file(root, "splits.csv", split_file))
    views = _kaggle_views(root, projections_file)
    img_root = Path(images_dir) if images_dir else root / "NLMCXR_png"
    studies, n_listed, n_present = [], 0, 0
    for name, data in _iter_xml(root):
        r = parse_report_xml(data, name)
        paths, vs = [], []
        for img_id in r["images"]:
            n_listed += 1
            f = img_root / f"{img_id}.png"
            if f.is_file():
                n_present += 1
                m = re.match(r"CXR(\d+)_\d+_(IM-\d+-\d+)", img_id)
                paths.append(str(f))
                vs.append(views.get((m.group(1), m.group(2)), "UNKNOWN") if m else "UNKNOWN")
        order = sorted(range(len(paths)), key=lambda i: (vs[i] != "FRONTAL", paths[i]))
        uid = r["uid"]
        studies.append(Study(
            study_id=uid, patient_id=uid, split=assign_split(uid, splits, seed), source="iu-xray-openi",
            image_paths=[paths[i] for i in order], views=[vs[i] for i in order],
            findings=r["findings"], impression=r["impression"], indication=r["indication"],
            comparison=r["comparison"],
            extra={"mesh_major": r["mesh_major"], "mesh_automatic": r["mesh_automatic"],
                   "image_ids": r["images"], "in_split_file": uid in splits,
                   "missing_images": len(r["images"]) - len(paths)},
        ))
    studies.sort(key=lambda s: (not s.study_id.isdigit(), int(s.study_id) if s.study_id.isdigit() else 0, s.study_id))
    log.info("iu-xray-openi: %d reports, %d images listed, %d present", len(studies), n_listed, n_present)
    return studies
