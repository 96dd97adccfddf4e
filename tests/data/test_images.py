import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cxreport.data.images import letterbox, load_image, load_resized
from cxreport.errors import ImageError


def _png_header_only(path, w, h):
    """A PNG whose IHDR declares w x h but carries almost no data (a decompression-bomb probe)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))


def test_png_8_and_16_bit_and_rgb(tmp_path):
    a = (np.arange(64 * 80).reshape(64, 80) % 256).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), a)
    b16 = (np.arange(64 * 80).reshape(64, 80) * 10).astype(np.uint16)
    Image.fromarray(b16).save(tmp_path / "b.png")
    g = load_image(tmp_path / "b.png")
    assert g.dtype == np.uint8 and g.min() == 0 and g.max() == 255
    Image.fromarray(np.stack([a] * 3, -1)).save(tmp_path / "c.jpg", quality=95)
    c = load_image(tmp_path / "c.jpg")
    assert c.shape == (64, 80) and abs(int(c.mean()) - int(a.mean())) < 3


def test_letterbox_keeps_aspect_and_orientation():
    g = np.zeros((100, 200), np.uint8)
    g[:, :100] = 255  # left half bright: must stay on the left (never flipped)
    out = letterbox(g, 64)
    assert out.shape == (64, 64)
    assert out[32, 5] == 255 and out[32, 60] == 0
    assert out[0].max() == 0 and out[-1].max() == 0  # padded rows above and below


def test_corrupt_and_truncated_and_bombs(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(ImageError, match="junk.png.*not a readable image"):
        load_image(tmp_path / "junk.png")
    a = (np.random.default_rng(0).random((300, 300)) * 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "t.jpg", quality=90)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t.jpg.*truncated"):
        load_image(tmp_path / "t.jpg")
    Image.fromarray(a).save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    (tmp_path / "p.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="p.png"):
        load_image(tmp_path / "p.png")
    _png_header_only(tmp_path / "huge.png", 30000, 30000)
    with pytest.raises(ImageError, match="huge.png.*(decompression bomb|exceeds the limit)"):
        load_image(tmp_path / "huge.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(ImageError, match="one.png.*1x1"):
        load_image(tmp_path / "one.png")
    with pytest.raises(ImageError, match="missing.png.*not found"):
        load_image(tmp_path / "missing.png")


def test_dicom_monochrome1_rescale_and_window(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def write(path, arr, photometric, **attrs):
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.PixelData = arr.astype(np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)

    ramp = np.tile(np.linspace(0, 4000, 64).astype(np.uint16), (64, 1))
    write(tmp_path / "m2.dcm", ramp, "MONOCHROME2")
    write(tmp_path / "m1.dcm", ramp, "MONOCHROME1")
    m2, m1 = load_image(tmp_path / "m2.dcm"), load_image(tmp_path / "m1.dcm")
    assert m2[0, 0] == 0 and m2[0, -1] == 255
    assert np.array_equal(m1, 255 - m2)  # inverted intensities, same geometry
    # A narrow window saturates values outside it: half the ramp is black/white.
    write(tmp_path / "w.dcm", ramp, "MONOCHROME2", WindowCenter=2000, WindowWidth=1000,
          RescaleSlope=1, RescaleIntercept=0)
    w = load_image(tmp_path / "w.dcm")
    assert (w == 0).mean() > 0.3 and (w == 255).mean() > 0.3
    out, orig = load_resized(tmp_path / "m2.dcm", 32)
    assert out.shape == (32, 32) and orig == (64, 64)
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    with pytest.raises(ImageError, match="bad.dcm"):
        load_image(tmp_path / "bad.dcm")


def test_max_pixels_above_pillows_own_bomb_limit_takes_effect(tmp_path):
    # 10000 x 9000 = 90 MP: over Pillow's 89.5 MP default, under the 100 MP we allow here. The file
    # carries no pixel data, so passing both size checks shows up as "truncated", not as a bomb.
    _png_header_only(tmp_path / "big.png", 10000, 9000)
    with pytest.raises(ImageError, match="big.png.*(decompression bomb|exceeds the limit)"):
        load_image(tmp_path / "big.png")
    with pytest.raises(ImageError, match="big.png.*corrupt or truncated"):
        load_image(tmp_path / "big.png", max_pixels=100_000_000)
