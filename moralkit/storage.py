"""Writing to disk safely: the one place that does it.

Everything moralkit leaves on disk goes through this module, which imports nothing else of
moralkit (it sits below every other module):

* :func:`atomic_write` writes a *file* through a temporary sibling and renames it into place, so
  a crash or a full disk never leaves a truncated file and an old file survives until the new
  one is complete;
* :func:`write_folder` does the same for a *folder* (a checkpoint, an adapter, a cached model):
  the previous version is kept as ``.<name>.old`` until the new one is in place, so at every
  instant one complete version exists; :func:`folder_versions` lists them, newest first;
* :func:`read_json` and :func:`read_table` read what we wrote, and say which file is damaged and
  what to do instead of raising a bare parser error; :func:`read_table` keeps text as text
  (an answer ``"NA"`` stays ``"NA"``);
* :class:`FolderLock` is a lock file (process id, host) that keeps two processes from writing
  into one folder, and notices a lock left by a process that no longer exists;
* :func:`claim_folder` refuses to write into a folder that holds files we did not write.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write(folder / "a.txt", lambda p: p.write_text("hello")).read_text()
'hello'
>>> sorted(p.name for p in folder.iterdir())     # no temporary file left behind
['a.txt']
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "OutputError",
    "DamagedFileError",
    "FolderLockedError",
    "ForeignFolderError",
    "atomic_write",
    "write_json",
    "write_folder",
    "folder_versions",
    "read_json",
    "read_table",
    "save_png",
    "FolderLock",
    "claim_folder",
    "LOCK_NAME",
]


class OutputError(OSError):
    """The output folder cannot take what we want to write (full disk, no permission)."""

    def __str__(self) -> str:  # the message alone: it already says why (no "[Errno 28]" in front)
        return str(self.strerror) if self.strerror else super().__str__()


class DamagedFileError(ValueError):
    """A file moralkit wrote earlier cannot be read back (cut short by a crash, edited by hand)."""


class FolderLockedError(RuntimeError):
    """Another process is writing into this folder."""


class ForeignFolderError(ValueError):
    """A folder holds files moralkit did not write; we refuse to write into it."""


def output_error(exc: OSError, path: Path) -> OutputError:
    """An :class:`OutputError` that says why ``path`` could not be written and what to do."""
    where = "(output_dir=... in the notebook's parameters cell, or --out for the CLI)"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why, fix = f"the disk holding {path.parent} is full", f"Free some space or choose another output folder {where}"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why, fix = f"{path.parent} is not writable", f"Choose another output folder {where}"
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        why = "a file stands where a folder of that path should be"
        fix = f"Give a folder, not a file {where}"
    elif exc.errno == errno.EISDIR:
        why, fix = "that path is a folder", "Give the path of a file to write, e.g. results.csv"
    else:
        why, fix = exc.strerror or str(exc), f"Check the path, or choose another output folder {where}"
    return OutputError(
        exc.errno,
        f"Could not write {path}: {why}. {fix}. "
        "Files written earlier are untouched: each file is written to a temporary name first.",
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entry list) to the disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. folders on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write a file through a temporary sibling and rename it into place.

    ``write(tmp_path)`` does the writing. A full disk or an interrupted write never leaves a
    truncated file behind, and an existing file survives until the new one is complete.
    Failures to write raise :class:`OutputError` with the reason and what to do.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise output_error(exc, path) from exc
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        _fsync(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """:func:`atomic_write` of ``data`` as indented JSON."""
    return atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2)))


def save_png(fig, path: str | Path, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG at ``path`` through :func:`atomic_write`; the figure stays open."""
    return atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, bbox_inches="tight", format="png"))


# --------------------------------------------------------------------------- folders
def _old(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def folder_versions(target: str | Path) -> list[Path]:
    """The complete versions of a folder written by :func:`write_folder`, newest first.

    Normally just ``[target]``; after a crash in the middle of a replacement, ``target`` may be
    missing and its previous version ``.<name>.old`` is then the newest complete one.
    """
    target = Path(target)
    return [p for p in (target, _old(target)) if p.is_dir()]


def write_folder(target: str | Path, fill: Callable[[Path], Any], *,
                 keep_existing: bool | Callable[[Path], bool] = False) -> Path:
    """Write a folder atomically: ``fill(tmp)`` fills a temporary sibling, which then replaces ``target``.

    The replacement keeps one complete version at every instant: the current ``target`` is
    renamed to ``.<name>.old``, the new folder renamed to ``target``, and only then is the old one
    deleted. A process killed at any point leaves either ``target`` or ``.<name>.old`` complete
    (:func:`folder_versions` finds it) and at worst a ``.<name>.tmp-<pid>`` folder that is never
    read. Every file is flushed to the disk before the renames.

    ``keep_existing``: if ``target`` already exists (e.g. another process wrote it first), keep it
    and discard the new folder; a function of ``target`` decides whether the existing folder is
    worth keeping (e.g. complete).
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old = _old(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        fill(tmp)
        for root, _, files in os.walk(tmp):
            for name in files:
                _fsync(Path(root) / name)
            _fsync(Path(root))
        if target.exists() and (keep_existing(target) if callable(keep_existing) else keep_existing):
            return target
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)  # target is the newest complete version
            os.replace(target, old)
        os.replace(tmp, target)  # from here on, target is complete again
        _fsync(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise output_error(exc, target) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- reading back
def read_json(path: str | Path, *, fix: str = "") -> Any:
    """Read a JSON file we wrote; a missing or damaged file raises an error naming it and ``fix``.

    Raises :class:`FileNotFoundError` (missing) or :class:`DamagedFileError` (cut short, not JSON).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{path} is missing. {fix}".strip(), str(path)) from None
    except UnicodeDecodeError as exc:
        raise DamagedFileError(f"{path} is damaged (not text: {exc.reason}). {fix}".strip()) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        ends = text.rstrip()[-1:]
        cut = "" if ends in ("}", "]") else " (it looks cut short, e.g. by a crash or a full disk)"
        raise DamagedFileError(
            f"{path} is damaged: not valid JSON{cut} ({exc.msg}, line {exc.lineno} column {exc.colno}). {fix}".strip()
        ) from None


def read_table(path: str | Path, *, text_columns: tuple[str, ...] = ("answer", "opp_answer"), exact: bool = False):
    """Read a CSV table moralkit wrote, keeping text as text.

    pandas turns ``NA``, ``None``, ``null``, ``nan`` … into missing values by default; a model's
    answer can be any of those words. Here only an empty field is missing, and ``text_columns``
    (the answers) are never parsed as numbers. ``exact=True`` keeps *every* column as text, so
    that writing the frame back gives the same fields (used to cut logs back to a checkpoint).
    A table that cannot be parsed raises :class:`DamagedFileError` naming the file.
    """
    import pandas as pd

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return pd.DataFrame()
        if exact:
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in text_columns})
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DamagedFileError(f"{path} is damaged and cannot be read as a table ({exc}).") from None


# --------------------------------------------------------------------------- locks
LOCK_NAME = ".lock"
"""The lock file's name inside a locked folder."""


def _host() -> str:
    return socket.gethostname()


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:  # pragma: no cover - e.g. platforms without signals
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


class FolderLock:
    """A lock file in ``folder`` saying which process (pid, host) is writing there.

    :meth:`acquire` creates ``<folder>/.lock`` atomically. If it exists, the folder is in use
    and :class:`FolderLockedError` says by whom, unless the lock is *stale*: written on this host
    by a process that no longer exists (killed, crashed, machine restarted), which is then
    taken over. A lock written by this very process is ours too (a notebook that re-runs a cell).
    A lock written on another host cannot be checked: the error says how to remove it.

    Use as a context manager, or :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, folder: str | Path, purpose: str = "training") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self.token: str | None = None

    @property
    def held(self) -> bool:
        return self.token is not None

    def _content(self) -> dict:
        return {"pid": os.getpid(), "host": _host(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "purpose": self.purpose, "command": " ".join(sys.argv)[:300], "token": self.token}

    def _create(self) -> bool:
        """Create the lock file if it does not exist; True on success."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(self._content(), handle)
        return True

    def _read(self, path: Path | None = None) -> dict | None:
        try:
            data = json.loads((path or self.path).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _is_stale(self, info: dict) -> bool:
        return info.get("host") == _host() and isinstance(info.get("pid"), int) and not _pid_alive(info["pid"])

    def _is_ours(self, info: dict) -> bool:
        return info.get("host") == _host() and info.get("pid") == os.getpid()

    def _refusal(self, info: dict) -> FolderLockedError:
        if not info:
            who = "an unknown process (the lock file is empty or unreadable)"
        else:
            who = f"process {info.get('pid')} on host {info.get('host')!r} since {info.get('since')}"
            if info.get("command"):
                who += f" (command: {info['command']})"
        return FolderLockedError(
            f"{self.folder} is in use: {who} is {info.get('purpose', 'writing') if info else 'writing'} there "
            f"(lock file {self.path}). Two processes writing one run would log every episode twice. Wait for it "
            f"to finish, or choose another folder. If you are sure no process uses the folder any more (e.g. it ran "
            f"on another machine that was switched off), delete {self.path} and try again."
        )

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise :class:`FolderLockedError` naming the process that holds it."""
        if self.held:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        self.token = uuid.uuid4().hex
        for _ in range(3):
            if self._create():
                return self
            info = self._read()
            if info is None:  # released in the meantime
                continue
            if self._is_ours(info):
                atomic_write(self.path, lambda p: p.write_text(json.dumps(self._content())))
                return self
            if not self._is_stale(info):
                self.token = None
                raise self._refusal(info)
            # stale: move exactly that file out of the way (only one process can rename it), then retry
            grabbed = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}-{self.token[:8]}")
            try:
                os.replace(self.path, grabbed)
            except FileNotFoundError:
                continue
            if self._read(grabbed) != info:  # someone else took it over first: put theirs back
                with contextlib.suppress(OSError):
                    os.link(grabbed, self.path)
                grabbed.unlink(missing_ok=True)
                continue
            grabbed.unlink(missing_ok=True)
        info = self._read() or {}
        self.token = None
        raise self._refusal(info)

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if not self.held:
            return
        info = self._read()
        if info and info.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FolderLock('{self.path}', held={self.held})"


# --------------------------------------------------------------------------- whose folder
def _ours(name: str) -> bool:
    """Entries moralkit leaves in a folder before its marker file exists (lock, temporary files)."""
    return name == LOCK_NAME or name.startswith(f"{LOCK_NAME}.stale-") or (name.startswith(".") and ".tmp" in name)


def claim_folder(folder: str | Path, *, marker: str | Callable[[Path], bool], kind: str, fix: str) -> Path:
    """Check that moralkit may write into ``folder``: it is new, empty, or already one of ours.

    ``marker`` is the file that makes a folder ours (e.g. ``config.json`` for a run folder) or a
    function that decides. A folder holding anything else raises :class:`ForeignFolderError`
    naming a few of its files, ``kind`` (what we would have written) and ``fix`` (what to do):
    we never overwrite files we did not write.
    """
    folder = Path(folder)
    if not folder.exists():
        return folder
    if not folder.is_dir():
        raise ForeignFolderError(f"{folder} is a file, not a folder; {fix}")
    is_ours = marker(folder) if callable(marker) else (folder / marker).exists()
    if is_ours:
        return folder
    foreign = sorted(p.name for p in folder.iterdir() if not _ours(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ForeignFolderError(
            f"{folder} is not empty and is not a {kind} (it holds {shown}); moralkit will not write into it, so "
            f"that nothing there is overwritten. {fix}"
        )
    return folder
