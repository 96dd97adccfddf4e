"""hub.py: hf:// names, offline cache reads, and which error a user sees for which failure."""

import pytest

from cxreport import hub
from cxreport.errors import InputError
from tests.fixtures.hub_cache import add_snapshot, offline_cache


def test_parse_hub_ref():
    assert hub.parse_hub_ref("hf://owner/name") == ("owner/name", None)
    assert hub.parse_hub_ref("hf://owner/name@v1.0") == ("owner/name", "v1.0")
    assert hub.parse_hub_ref("hf://bert-base-uncased") == ("bert-base-uncased", None)
    for bad in ("hf://", "hf://a/b/c", "hf://a b", "hf://a/b@"):
        with pytest.raises(InputError, match="hf://OWNER/NAME"):
            hub.parse_hub_ref(bad)


def test_offline_reads_the_cache_and_names_what_is_missing(tmp_path, monkeypatch):
    cache = offline_cache(monkeypatch, tmp_path / "hub")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "weights.pth").write_bytes(b"w")
    snap = add_snapshot(cache, "me/scorer", tmp_path / "repo")
    assert hub.hub_file("me/scorer", "weights.pth").read_bytes() == b"w"
    assert hub.snapshot("me/scorer", snap.name) == snap
    with pytest.raises(hub.HubUnavailable, match=r"HF_HUB_OFFLINE=1.*`hf download me/scorer other.pth`"):
        hub.hub_file("me/scorer", "other.pth")
    with pytest.raises(hub.HubUnavailable, match=r"`hf download me/other --revision v2`"):
        hub.snapshot("me/other", "v2")


def test_network_failure_and_missing_file_are_told_apart(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def no_network(repo, **kw):  # what hf_hub_download raises when the Hub is unreachable, nothing cached
        raise LocalEntryNotFoundError("cannot reach the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with pytest.raises(hub.HubUnavailable, match="the Hub could not be reached"):
        hub.hub_file("me/scorer", "weights.pth", cache_first=False)

    def no_file(repo, **kw):
        raise EntryNotFoundError("404")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_file)
    with pytest.raises(InputError, match="has no file weights.pth"):
        hub.hub_file("me/scorer", "weights.pth", cache_first=False)
