"""The state that makes a verdict unique and reviewable: the outbox's epoch, a corrupt database moved
aside, the NG archive bounded by count and bytes, and a bad state folder in one line."""

import logging

import numpy as np
import pytest

from edge_inspector.errors import UserError
from edge_inspector.service.archive import Archive
from edge_inspector.service.outbox import Outbox


def add(box: Outbox) -> int:
    return box.add_verdict(lambda seq: [("t/verdict", b"{}", 1, False, "verdict")])


def test_epoch_is_kept_across_restarts_and_changes_with_a_new_database(tmp_path):
    box = Outbox(tmp_path / "o.db")
    epoch = box.epoch
    assert len(epoch) == 8 and add(box) == 1
    box.close()
    again = Outbox(tmp_path / "o.db")
    assert again.epoch == epoch and add(again) == 2
    again.close()
    other = Outbox(tmp_path / "other.db")
    assert other.epoch != epoch  # numbering restarts at 1, but (epoch, seq) stays unique
    other.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_outbox_is_moved_aside_and_a_new_epoch_begins(tmp_path, caplog, damage):
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    old_epoch = box.epoch
    for _ in range(50):
        add(box)
    box.close()
    data = path.read_bytes()
    path.write_bytes(b"this is not a database" * 100 if damage == "garbage" else data[:4096] + b"\0" * 4096)
    with caplog.at_level(logging.ERROR):
        box = Outbox(path)
    assert box.epoch != old_epoch and add(box) == 1
    lines = [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]
    assert len(lines) == 1 and str(path) in lines[0]
    assert len(list(tmp_path.glob("outbox.sqlite3.corrupt-*"))) == 1  # kept for inspection, not deleted
    box.close()


def test_a_state_dir_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"service.state_dir .*state: is a file") as info:
        Outbox(blocker / "outbox.sqlite3")
    assert "\n" not in str(info.value)


def test_archive_names_carry_the_epoch_and_stay_within_count_and_bytes(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)  # noise: ~4 KB per PNG
    mask = np.zeros((64, 64), np.uint8)
    archive = Archive(tmp_path, max_items=100, max_bytes=30_000)
    for seq in range(1, 21):
        archive.add("aaaa", seq, image, mask)
    kept = sorted(p.name for p in tmp_path.glob("*.png") if "_mask" not in p.name)
    total = sum(p.stat().st_size for p in tmp_path.glob("*.png"))
    assert total <= 30_000 and 2 <= len(kept) < 20 and kept[-1] == "aaaa-0000000020.png"
    archive.add("bbbb", 1, image, mask)  # a new epoch: seq 1 again, nothing overwritten
    assert (tmp_path / "bbbb-0000000001.png").is_file() and (tmp_path / "aaaa-0000000020.png").is_file()


def test_a_failed_archive_write_is_counted_and_said_once(tmp_path, caplog):
    archive = Archive(tmp_path / "a", max_items=10)
    (tmp_path / "a").rmdir()
    (tmp_path / "a").write_text("")  # the folder became a file: every write fails
    image = np.zeros((8, 8), np.uint8)
    with caplog.at_level(logging.ERROR):
        for seq in range(3):
            assert archive.add("e", seq, image, image) is None
    assert archive.failures == 3
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
