"""Files written whole or not at all, and read back only when they are what they claim
(minigpt.files): atomic_write, atomic_write_text, atomic_folder and check_format."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from minigpt.files import (
    atomic_folder,
    atomic_write,
    atomic_write_text,
    check_format,
    digest,
)


def staging_of(path):
    """The staging name minigpt.files uses beside ``path`` in this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


class Boom(RuntimeError):
    pass


def test_atomic_write_creates_then_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "data.bin"  # the folder is made on demand
    assert atomic_write(path, lambda f: f.write(b"first version, longer than the second")) == path
    assert path.read_bytes() == b"first version, longer than the second"
    atomic_write(path, lambda f: f.write(b"second"))
    assert path.read_bytes() == b"second"  # replaced, not overwritten in place: no old tail
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.bin"]


def test_atomic_write_that_fails_leaves_the_old_file_and_no_staging_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old content")
    seen = []

    def half_then_fail(f):
        f.write(b"new cont")
        seen.append(staging_of(path).exists())  # the bytes go to the staging file, not path
        raise Boom("disk on fire")

    with pytest.raises(Boom, match="disk on fire"):
        atomic_write(path, half_then_fail)
    assert seen == [True]
    assert path.read_bytes() == b"old content"
    assert not staging_of(path).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_atomic_write_that_fails_on_a_new_file_creates_nothing(tmp_path):
    path = tmp_path / "new.bin"

    def write_then_fail(f):
        f.write(b"x")
        raise Boom()

    with pytest.raises(Boom):
        atomic_write(path, write_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text_is_utf8(tmp_path):
    path = tmp_path / "note.txt"
    assert atomic_write_text(path, "naïve café ✓ 東京\n") == path
    assert path.read_bytes() == "naïve café ✓ 東京\n".encode()
    atomic_write_text(path, "")
    assert path.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["note.txt"]


def test_atomic_folder_fills_a_staging_folder_then_renames_it_into_place(tmp_path):
    target = tmp_path / "cache" / "corpus"
    with atomic_folder(target) as staging:
        assert staging == staging_of(target) and staging.is_dir()
        assert not target.exists()  # nothing is visible under the real name yet
        (staging / "a.txt").write_text("alpha")
        (staging / "deep").mkdir()
        (staging / "deep" / "b.txt").write_text("beta")
    assert (target / "a.txt").read_text() == "alpha"
    assert (target / "deep" / "b.txt").read_text() == "beta"
    assert not staging_of(target).exists()
    assert [p.name for p in target.parent.iterdir()] == ["corpus"]


def test_atomic_folder_whose_block_raises_is_removed_and_the_target_untouched(tmp_path):
    target = tmp_path / "corpus"
    with pytest.raises(Boom):
        with atomic_folder(target) as staging:
            (staging / "a.txt").write_text("half")
            raise Boom()
    assert not target.exists() and not staging_of(target).exists()

    target.mkdir()  # an existing folder survives a failed refill
    (target / "a.txt").write_text("good")
    with pytest.raises(Boom):
        with atomic_folder(target) as staging:
            (staging / "a.txt").write_text("bad")
            raise Boom()
    assert (target / "a.txt").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


def test_atomic_folder_keeps_the_folder_another_process_made_first(tmp_path):
    target = tmp_path / "corpus"
    with atomic_folder(target) as staging:
        (staging / "a.txt").write_text("ours")
        # Meanwhile another process filling the same cache finishes first.
        target.mkdir()
        (target / "a.txt").write_text("theirs")
    assert (target / "a.txt").read_text() == "theirs"  # theirs is kept, no error
    assert not staging_of(target).exists()  # and our copy is dropped
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


class FormatError(ValueError):
    pass


def check(data, path):
    check_format(data, path, kind="minigpt widget", format="widget", version=3, error=FormatError)


def test_check_format_passes_the_right_format_and_version(tmp_path):
    check({"format": "widget", "version": 3, "other": "fields"}, tmp_path / "w.json")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"format": "gadget", "version": 3},
            r"is not a minigpt widget \(no format='widget' in it\)",
        ),
        ({"version": 3}, r"is not a minigpt widget"),
        (["format", "widget"], r"is not a minigpt widget"),
        ({"format": "widget", "version": 2}, r"has minigpt widget version 2; this minigpt reads 3"),
        ({"format": "widget"}, r"has minigpt widget version None; this minigpt reads 3"),
    ],
)
def test_check_format_raises_the_given_error_naming_the_path(tmp_path, data, message):
    path = tmp_path / "w.json"
    with pytest.raises(FormatError, match=message) as info:
        check(data, path)
    assert str(info.value).startswith(str(path))


def test_digest_sees_one_changed_value_and_ignores_nothing():
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 3, "meta": {"a": [1, 2]}}
    same = {"meta": {"a": (1, 2)}, "step": 3, "w": torch.arange(6.0).reshape(2, 3)}
    assert digest(state) == digest(same)  # key order and list/tuple do not matter
    changed = {**state, "w": state["w"].clone()}
    changed["w"][1, 2] = 5.000001
    assert digest(changed) != digest(state)
    assert digest({**state, "w": state["w"].reshape(3, 2)}) != digest(state)  # shape counts
    assert digest({**state, "w": state["w"].double()}) != digest(state)  # dtype counts


def test_stale_staging_file_of_a_dead_process_is_removed_on_the_next_write(tmp_path):
    target = tmp_path / "checkpoint.pt"
    dead = tmp_path / ".checkpoint.pt.tmp999999999"  # no such process
    dead.write_bytes(b"x" * 100)
    atomic_write(target, lambda f: f.write(b"data"))
    assert target.read_bytes() == b"data" and not dead.exists()


def test_a_failed_write_leaves_the_old_file_and_no_staging_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def disk_full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match=r"the disk is full: writing .*a\.bin failed"):
        atomic_write(target, disk_full)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
