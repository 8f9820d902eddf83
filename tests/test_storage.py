"""moralkit.storage: folders replaced atomically, files read back with clear errors, folder locks."""

import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

from moralkit import storage
from moralkit.storage import (
    LOCK_NAME,
    DamagedFileError,
    FolderLock,
    FolderLockedError,
    ForeignFolderError,
    OutputError,
    claim_folder,
    folder_versions,
    read_json,
    read_table,
    write_folder,
)


def fill_with(text):
    def fill(tmp):
        (tmp / "a.txt").write_text(text)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text(text * 2)

    return fill


def test_write_folder_replaces_a_folder_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "ckpt"
    write_folder(target, fill_with("one"))
    write_folder(target, fill_with("two"))
    assert (target / "a.txt").read_text() == "two" and (target / "sub" / "b.txt").read_text() == "twotwo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert folder_versions(target) == [target]


@pytest.mark.parametrize("dies_at", ["filling", "first rename", "second rename"])
def test_a_replacement_killed_anywhere_leaves_one_complete_version(tmp_path, monkeypatch, dies_at):
    target = tmp_path / "ckpt"
    write_folder(target, fill_with("one"))
    real_replace = os.replace

    def dying_replace(src, dst):
        if (dies_at == "first rename" and str(src) == str(target)) or (dies_at == "second rename" and str(dst) == str(target)):
            raise KeyboardInterrupt(dies_at)
        return real_replace(src, dst)

    def dying_fill(tmp):
        fill_with("two")(tmp)
        if dies_at == "filling":
            raise KeyboardInterrupt(dies_at)

    monkeypatch.setattr(storage.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        write_folder(target, dying_fill)
    monkeypatch.undo()
    newest = folder_versions(target)[0]
    assert (newest / "a.txt").read_text() == "one" and (newest / "sub" / "b.txt").read_text() == "oneone"
    write_folder(target, fill_with("three"))  # the next save recovers from any of these states
    assert folder_versions(target) == [target] and (target / "a.txt").read_text() == "three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_full_disk_while_writing_a_folder_is_explained(tmp_path):
    import errno

    target = tmp_path / "ckpt"
    write_folder(target, fill_with("one"))

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="is full"):
        write_folder(target, full)
    assert (target / "a.txt").read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_keep_existing_keeps_a_folder_written_first(tmp_path):
    target = tmp_path / "model"
    write_folder(target, fill_with("theirs"))
    write_folder(target, fill_with("mine"), keep_existing=lambda folder: (folder / "a.txt").exists())
    assert (target / "a.txt").read_text() == "theirs"
    write_folder(target, fill_with("mine"), keep_existing=False)
    assert (target / "a.txt").read_text() == "mine"


def test_read_json_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"reward": "ga')
    with pytest.raises(DamagedFileError, match=r"config.json is damaged: not valid JSON \(it looks cut short.*Do this\."):
        read_json(path, fix="Do this.")
    path.write_text('{"a": 1,}')  # complete, but not JSON
    with pytest.raises(DamagedFileError) as err:
        read_json(path)
    assert "cut short" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.*Do that"):
        read_json(tmp_path / "nothing.json", fix="Do that.")
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DamagedFileError, match="not text"):
        read_json(path)


def test_read_table_keeps_text_as_text(tmp_path):
    path = tmp_path / "rounds.csv"
    frame = pd.DataFrame({"episode": [0, 1, 2, 3], "answer": ["NA", "null", "007", ""], "reward": [1.5, None, 2.0, 3.0]})
    frame.to_csv(path, index=False)
    back = read_table(path)
    assert back["answer"].tolist()[:3] == ["NA", "null", "007"] and pd.isna(back["answer"][3])
    assert back["reward"].dtype == float and pd.isna(back["reward"][1])
    exact = read_table(path, exact=True)
    assert exact["reward"].tolist() == ["1.5", "", "2.0", "3.0"]  # exact: every field as written
    (tmp_path / "empty.csv").write_text("")
    assert read_table(tmp_path / "empty.csv").empty
    (tmp_path / "bad.csv").write_text('a,b\n1,"unclosed\n')
    with pytest.raises(DamagedFileError, match="bad.csv is damaged"):
        read_table(tmp_path / "bad.csv")


# --------------------------------------------------------------------------- locks
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid is free
    return proc.pid


def test_a_lock_refuses_others_and_is_reentrant_for_its_own_process(tmp_path):
    with FolderLock(tmp_path) as lock:
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and lock.held
        again = FolderLock(tmp_path).acquire()  # same process (a notebook re-running a cell)
        again.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_live_process_on_this_host_holds_the_lock(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                        "since": "now", "purpose": "training"}))
        with pytest.raises(FolderLockedError, match=f"process {sleeper.pid} on host"):
            FolderLock(tmp_path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = FolderLock(tmp_path).acquire()  # now stale: taken over
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert sorted(os.listdir(tmp_path)) == []  # no leftovers of the take-over


def test_a_lock_of_another_host_or_an_unreadable_one_is_never_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead_pid(), "host": "elsewhere", "since": "yesterday"}))
    with pytest.raises(FolderLockedError, match="host 'elsewhere'.*delete"):
        FolderLock(tmp_path).acquire()
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(FolderLockedError, match="unknown process"):
        FolderLock(tmp_path).acquire()


def test_a_dead_processes_lock_is_stale(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    with FolderLock(tmp_path):
        pass
    assert os.listdir(tmp_path) == []


def test_claim_folder(tmp_path):
    assert claim_folder(tmp_path / "new", marker="config.json", kind="run folder", fix="x") == tmp_path / "new"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / LOCK_NAME).write_text("{}")
    claim_folder(tmp_path / "mine", marker="config.json", kind="run folder", fix="x")  # only our own lock file
    (tmp_path / "mine" / "config.json").write_text("{}")
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    claim_folder(tmp_path / "mine", marker="config.json", kind="run folder", fix="x")  # ours: config.json
    (tmp_path / "theirs").mkdir()
    for name in "abcdefg":
        (tmp_path / "theirs" / f"{name}.txt").write_text("x")
    with pytest.raises(ForeignFolderError, match=r"holds a.txt, b.txt, c.txt, d.txt, e.txt and 2 more.*Pick another"):
        claim_folder(tmp_path / "theirs", marker="config.json", kind="run folder", fix="Pick another.")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ForeignFolderError, match="is a file"):
        claim_folder(tmp_path / "file", marker="config.json", kind="run folder", fix="x")
