"""A PNG/JPEG film as a DX DICOM instance (Digital X-Ray Image Storage - For Presentation).

For trying a set-up end to end (`cxreport dicom wrap`), and for the tests and benchmarks that send
real films to the listener. The pixels are kept as they are (8- or 16-bit grey, never flipped);
patient, study and view are whatever the caller says, so nothing here claims clinical provenance.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from cxreport.errors import ImageError, require

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def image_to_dx(image, target: Path, *, patient_id: str = "ANON", patient_name: str = "Anonymous^",
                study_uid: str | None = None, series_uid: str | None = None, sop_uid: str | None = None,
                view_position: str | None = "PA", accession: str = "", study_id: str = "1",
                instance_number: int = 1) -> dict:
    """Write ``image`` (a PNG/JPEG path or a uint8/uint16 H x W array) as a DX file at ``target``;
    returns its UIDs. UIDs not given are made fresh."""
    pydicom = require("pydicom", "interop", "writing DICOM files")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = _grey(image)
    now = datetime.datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = DX_FOR_PRESENTATION, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, patient_name, "", ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = accession, study_id, ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "DX", 1, instance_number
    ds.Manufacturer, ds.BodyPartExamined, ds.ImageType = "", "CHEST", ["DERIVED", "SECONDARY"]
    ds.PresentationIntentType, ds.PresentationLUTShape, ds.ImageLaterality = "FOR PRESENTATION", "IDENTITY", "U"
    # Displayed as radiographs are read: patient's right on the viewer's left, head up.
    ds.PatientOrientation = ["L", "F"] if (view_position or "").upper() in ("PA", "AP") else ["P", "F"]
    chest = pydicom.Dataset()
    chest.CodeValue, chest.CodingSchemeDesignator, chest.CodeMeaning = "43799004", "SCT", "Chest"
    ds.AnatomicRegionSequence = [chest]
    ds.DetectorType, ds.PositionerType, ds.AcquisitionContextSequence = "", "", []
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    if view_position:
        ds.ViewPosition = view_position
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = (1 << bits) // 2, 1 << bits
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    target = Path(target)
    from cxreport.fsio import atomic_path

    with atomic_path(target) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return {"study_uid": str(ds.StudyInstanceUID), "series_uid": str(ds.SeriesInstanceUID),
            "sop_uid": str(ds.SOPInstanceUID), "path": str(target)}


def _grey(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        arr = image
    else:
        from PIL import Image

        try:
            with Image.open(image) as im:
                arr = np.asarray(im.convert("I;16") if im.mode in ("I", "I;16", "I;16B") else im.convert("L"))
        except OSError as exc:
            raise ImageError(image, f"not a readable PNG/JPEG ({exc})") from None
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ImageError(str(image)[:80], f"grey uint8/uint16 H x W expected, got {arr.dtype} {arr.shape}")
    return arr
