"""Run templates shipped with the package: listed, printed complete and commented, loadable back,
and the smoke template trains on a tiny prepared cache from the command line."""

import dataclasses
import json

import pytest

from cxreport.cli import main
from cxreport.config import load_config, to_dict
from cxreport.errors import InputError
from cxreport.training.config import HELP, RunConfig
from cxreport.training.templates import commented_config, list_templates, resolve_config
from tests.training.test_train import syn_cache  # noqa: F401  (fixture)

NAMES = {"smoke", "findings-head", "report-model", "report-decoder"}


def _strict(text: str):
    def refuse(const):
        raise ValueError(f"not JSON: {const}")

    return json.loads(text, parse_constant=refuse)


def test_templates_are_listed_with_a_description(capsys):
    names = list_templates()
    assert NAMES <= set(names) and all(len(about) > 20 for about in names.values())
    assert main(["train", "--list-configs"]) == 0
    out = capsys.readouterr().out
    assert all(line.split()[0] in names for line in out.splitlines()[: len(names)])


def test_unknown_config_lists_the_templates(capsys):
    assert main(["train", "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "tiny: no such run config file and no run template" in err and "--set model.name=tiny" in err
    assert all(n in err for n in NAMES)


def _paths(cls, prefix=""):
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _paths(hints[f.name], f"{prefix}{f.name}.")


def test_every_config_key_has_help():
    from cxreport.training.config import SourceConfig

    paths = list(_paths(RunConfig)) + list(_paths(SourceConfig, "data.sources[]."))
    assert [p for p in paths if p not in HELP] == [] and set(HELP) == set(paths)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_show_config_is_complete_commented_and_loads_back(name, tmp_path, capsys):
    assert main(["train", "--show-config", name]) == 0
    text = capsys.readouterr().out
    shown = _strict(text)
    assert shown["#"].startswith(list_templates()[name]) and shown["train"]["#lr"] == HELP["train.lr"]
    assert set(RunConfig.__dataclass_fields__) <= set(shown)  # every section, every key
    path = tmp_path / "run.json"
    path.write_text(text)
    again = load_config(RunConfig, path)
    assert to_dict(again) == to_dict(load_config(RunConfig, resolve_config(name)))
    assert commented_config(str(path))["train"] == shown["train"]  # a saved copy prints the same


def test_old_oversampling_name_still_loads(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"data": {"min_positives": 100}}))
    assert load_config(RunConfig, path).data.oversample_min_positives == 100
    assert load_config(RunConfig, None, ["data.min_positives=7"]).data.oversample_min_positives == 7
    path.write_text(json.dumps({"data": {"min_positives": 1, "oversample_min_positives": 2}}))
    with pytest.raises(InputError, match="give 'oversample_min_positives' only"):
        load_config(RunConfig, path)


def test_smoke_template_trains_on_any_cache(syn_cache, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "smoke"
    assert main(["train", "--config", "smoke", "--cache", syn_cache, "--out-dir", str(run),
                 "--set", "train.progress=false", "--set", "train.threads=1"]) == 0
    captured = capsys.readouterr()
    result = _strict(captured.out.strip().splitlines()[-1])
    assert result["step"] == 6 and (run / "best" / "model.safetensors").is_file()
    assert "Labels per finding" in captured.err and "training finished at step 6" in captured.err
    cfg = _strict((run / "best" / "config.json").read_text())
    assert set(cfg["model"]["findings"]["train_positives"]) == set(cfg["model"]["findings"]["labels"])
    for line in (run / "log.jsonl").read_text().splitlines():
        _strict(line)


def test_empty_cache_of_a_template_says_how_to_give_one(capsys):
    assert main(["train", "--config", "findings-head"]) == 2
    assert "cxreport train --cache PATH" in capsys.readouterr().err
