"""Per-call caches behind build_spec/validate_spec speed (issue #5 item 7) see every change:
the image count of a data folder and the placement answers a server reuses."""

from __future__ import annotations

import os
import time

import pytest

from taoskills.bank.catalog import Catalog
from taoskills.data.sample_data import write_sample_images
from taoskills.platforms import placement
from taoskills.platforms import registry as platform_registry
from taoskills.platforms.base import PlatformBase
from taoskills.specs import schedules


def _age(folder, seconds: float = 30.0) -> None:
    """Move the mtime of ``folder`` and every folder under it into the past (not "racy")."""
    past = time.time() - seconds
    for dirpath, _dirs, _files in os.walk(folder):
        os.utime(dirpath, (past, past))


def test_image_count_is_remembered_until_a_folder_changes(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    write_sample_images(folder, n=3)
    _age(folder)
    assert schedules.count_images(str(folder)) == 3
    assert str(folder) in schedules._COUNTS

    from taoskills import tao

    def no_walk(_folder):
        raise AssertionError("an unchanged folder is not walked again")

    with monkeypatch.context() as m:
        m.setattr(tao, "iter_image_files", no_walk)
        assert schedules.count_images(str(folder)) == 3

    (folder / "extra.png").write_bytes((folder / next(iter(os.listdir(folder)))).read_bytes())
    assert schedules.count_images(str(folder)) == 4  # the folder's mtime moved
    (folder / "sub").mkdir()
    _age(folder)
    assert schedules.count_images(str(folder)) == 4
    (folder / "sub" / "deep.jpg").write_bytes(b"not really an image, but named like one")
    assert schedules.count_images(str(folder)) == 5  # a change deep down is seen too
    _age(folder)
    assert schedules.count_images(str(folder)) == 5
    (folder / "extra.png").unlink()
    assert schedules.count_images(str(folder)) == 4  # a removal is seen


def test_image_count_of_a_fresh_or_linked_tree_is_not_remembered(tmp_path):
    fresh = tmp_path / "fresh"
    write_sample_images(fresh, n=2)
    assert schedules.count_images(str(fresh)) == 2
    assert str(fresh) not in schedules._COUNTS  # changed just now: the mtime may not move again
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "a.png").symlink_to(next(fresh.iterdir()))
    _age(linked)
    assert schedules.count_images(str(linked)) == 1
    assert str(linked) not in schedules._COUNTS
    assert schedules.count_images(str(tmp_path / "missing")) is None
    assert schedules.count_images("s3://bucket/images") is None


class _Counting(PlatformBase):
    name = "countcheck"
    calls = 0

    def quick_check(self, engine, info, action):
        type(self).calls += 1
        return None


@pytest.fixture
def counting_platform():
    platform_registry.register("countcheck", _Counting)
    _Counting.calls = 0
    try:
        yield _Counting
    finally:
        platform_registry.unregister("countcheck")
        placement.set_cache_ttl(0)


def test_placement_cache_is_off_by_default_and_on_for_a_server(counting_platform, monkeypatch):
    info = Catalog.load().get("tao-train-nvdinov2").info
    placement.set_cache_ttl(0)
    placement.place(info, "train", platform="countcheck")
    placement.place(info, "train", platform="countcheck")
    assert counting_platform.calls == 2 * len(
        [e for e in placement.engine_registry.engines().values() if not e.why_not(info, "train")]
    )
    per_call = counting_platform.calls // 2

    placement.set_cache_ttl(60)
    first = placement.place(info, "train", platform="countcheck")
    again = placement.place(info, "train", platform="countcheck")
    assert counting_platform.calls == 3 * per_call and again == first  # answered from the cache
    monkeypatch.setenv("TAO_SKILLS_CACHE_PROBE", "1")  # any change of the environment is seen at once
    placement.place(info, "train", platform="countcheck")
    assert counting_platform.calls == 4 * per_call
    placement.require(info, "train", engine=None, platform="countcheck")  # a launch checks afresh
    assert counting_platform.calls >= 4 * per_call + 1

    placement.set_cache_ttl(0.05)
    time.sleep(0.1)
    placement.place(info, "train", platform="countcheck")  # the entry expired
    assert counting_platform.calls >= 5 * per_call + 1


def test_a_new_registration_is_seen_by_a_cached_placement(counting_platform):
    info = Catalog.load().get("tao-train-nvdinov2").info
    placement.set_cache_ttl(60)
    assert placement.place(info, "train", platform="countcheck").runs_here

    class Refusing(_Counting):
        def quick_check(self, engine, info, action):
            return "nothing runs here"

    platform_registry.register("countcheck", Refusing, replace=True)
    assert not placement.place(info, "train", platform="countcheck").runs_here
