"""The build folder's storage rules, on a local folder and on an S3 bucket over HTTP: files appear whole or
not at all, exactly one of two exclusive creates wins, staged files are put in place."""

from __future__ import annotations

import pytest
from s3kit import S3Endpoint

from pipeline.storage import Store, StoreError, is_url


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path) -> Store:
    if request.param == "local":
        return Store.at(tmp_path / "out")
    endpoint: S3Endpoint = request.getfixturevalue("s3")
    return Store.at(f"{endpoint.bucket()}/run")


def test_urls_and_relative_paths_are_told_apart(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_url("s3://bucket/run") and not is_url("runs/x") and not is_url("file:///tmp/x")
    local = Store.at("runs/x")
    assert local.local and local.url == str(tmp_path / "runs" / "x")  # resolved here, not on a worker's node
    assert Store.at("file://" + str(tmp_path)).url == str(tmp_path)


def test_write_read_list_remove(store: Store) -> None:
    store.child("shards").write_text("a.stats.json", '{"a": 1}')
    store.child("shards").write_bytes(".a-00.tar.beef.tmp", b"staged")
    shards = store.child("shards")
    assert shards.read_text("a.stats.json") == '{"a": 1}'
    assert shards.names("*.stats.json") == ["a.stats.json"]
    assert shards.names(".a*") == [".a-00.tar.beef.tmp"]
    assert shards.names("*.tar") == []
    shards.rename(".a-00.tar.beef.tmp", "a-00.tar")
    assert shards.names("a-*") == ["a-00.tar"] and not shards.exists(".a-00.tar.beef.tmp")
    assert shards.read_bytes("a-00.tar") == b"staged"
    shards.remove("a-00.tar")
    shards.remove("a-00.tar")  # gone already: fine
    assert shards.names("a-*") == []


def test_a_failed_write_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.replacing("manifest.parquet") as stream:
        stream.write(b"x" * 2**20)
        raise RuntimeError("killed mid-write")
    assert not store.exists("manifest.parquet")
    with store.replacing("manifest.parquet") as stream:
        stream.write(b"whole")
    assert store.read_bytes("manifest.parquet") == b"whole"


def test_exactly_one_exclusive_create_wins(store: Store) -> None:
    assert store.create("build.lock", b"first")
    assert not store.create("build.lock", b"second")
    assert store.read_bytes("build.lock") == b"first"


def test_stale_temporaries_go_and_nothing_else(store: Store) -> None:
    for name in (".plan.parquet.123.tmp", "plan.parquet", ".hidden"):
        store.write_bytes(name, b"x")
    assert store.remove_stale() == [".plan.parquet.123.tmp"]
    assert store.names(".*") == [".hidden"] and store.exists("plan.parquet")


def test_an_unknown_or_missing_filesystem_is_named() -> None:
    with pytest.raises(StoreError, match=r"gcs2://x/y: no storage for this URL here \(Protocol not known"):
        Store.at("gcs2://x/y")
