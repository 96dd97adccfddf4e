from dataclasses import dataclass, field

import pytest

from cxreport.config import apply_overrides, load_config, save_config
from cxreport.errors import InputError


@dataclass
class Opt:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Cfg:
    name: str = "x"
    steps: int = 10
    opt: Opt = field(default_factory=Opt)
    note: str | None = None


def test_overrides_and_roundtrip(tmp_path):
    cfg = apply_overrides(Cfg(), ["opt.lr=3e-4", "steps=5", "name=run1", "note=null"])
    assert cfg.opt.lr == 3e-4 and cfg.steps == 5 and cfg.name == "run1" and cfg.note is None
    save_config(cfg, tmp_path / "c.json")
    assert load_config(Cfg, tmp_path / "c.json") == cfg


@pytest.mark.parametrize("bad", ["opt.lrr=1", "nope.x=1", "steps=abc", "noequals"])
def test_bad_overrides_are_clear(bad):
    with pytest.raises(InputError):
        apply_overrides(Cfg(), [bad])


def test_unknown_key_in_file(tmp_path):
    (tmp_path / "c.json").write_text('{"stepz": 3}')
    with pytest.raises(InputError, match="stepz"):
        load_config(Cfg, tmp_path / "c.json")
