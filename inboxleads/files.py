"""The files the tool writes, with the differences between platforms in one place.

Reports, the journal and the run lock are written through here:

- private: created with mode 0600 where the platform has modes (on Windows a
  file in the user's folders is already the user's own);
- binary: no CRLF translation on Windows, so a report reads back byte for byte;
- replaced whole: a report is built beside its target and moved onto it;
- durable: `sync` reaches the disk, through `F_FULLFSYNC` on macOS, where
  `fsync` only hands the data to the drive's cache.

`check_output` refuses, before anything is read or sent, a path that no file of
the run may be written to: a folder, a device, a pipe, or one of the run's inputs
(by `file_id`, whatever the spelling).

`path_key` folds the case of a path on a case-insensitive filesystem (the
default on macOS and Windows), so that two spellings of one file name one
journal and one lock.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import UsageError

# Windows opens files in text mode unless told otherwise: "\n" would become "\r\n".
_BINARY = getattr(os, "O_BINARY", 0)
# Windows refuses to replace a file that another process (a virus scanner, an
# indexer, an editor) holds open for a moment: try again for up to this long.
REPLACE_RETRY_S = 2.0
_RETRY_REPLACE = sys.platform == "win32"


def _no_full_sync(fd: int) -> None:
    raise OSError("F_FULLFSYNC is not available here")


if sys.platform == "darwin":
    import fcntl

    def _full_sync(fd: int) -> None:
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)

    full_sync: Callable[[int], None] = _full_sync
else:
    full_sync = _no_full_sync


def sync(fd: int) -> None:
    """Make what was written to `fd` survive a power cut: `F_FULLFSYNC` where there
    is one (macOS), else (or where the filesystem refuses it) `fsync`."""
    try:
        full_sync(fd)
    except OSError:
        os.fsync(fd)


# Whether files have POSIX modes to make private (os.fchmod is missing on Windows
# before Python 3.13, and means little there: a file is private by its folder's ACL).
HAS_MODES = hasattr(os, "fchmod") and sys.platform != "win32"


def _set_private(fd: int) -> None:
    """Mode 0600 for an existing regular file, where the platform has modes."""
    fchmod = getattr(os, "fchmod", None)
    if fchmod is None or not HAS_MODES:
        return
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.fstat(fd).st_mode):  # devices and pipes are left alone
            fchmod(fd, 0o600)


def open_private(path: Path | str, mode: str = "w") -> IO[str]:
    """Open a text file for writing ("w") or appending ("a"), private and binary.

    Text that came from a file name that is not UTF-8 (Python holds its bytes as
    surrogates) is written back as those bytes."""
    flags = os.O_WRONLY | os.O_CREAT | _BINARY | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        _set_private(fd)  # an existing file keeps its mode otherwise
        return open(fd, mode, encoding="utf-8", newline="", errors="surrogateescape")
    except BaseException:
        os.close(fd)
        raise


def _existing(path: Path) -> Path:
    """The nearest of an absolute `path` and its parents that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def make_folder(folder: Path) -> None:
    """Make `folder` and any missing parent private to the user (0700, as the XDG
    base directories are): the state directory holds journals that decide what a
    later run skips. Folders that exist are left as they are."""
    here = Path(os.path.abspath(folder))
    path = _existing(here)
    for name in here.relative_to(path).parts:  # the missing folders, outermost first
        path = path / name
        with contextlib.suppress(FileExistsError):  # made by another run just now
            path.mkdir(mode=0o700)
        if HAS_MODES:
            with contextlib.suppress(OSError):
                path.chmod(0o700)  # whatever the umask


def temporary(beside: Path) -> Path:
    """A new, private file next to `beside` (`.NAME.XXXX.part`), for building it."""
    # The name is cut so that a name the folder allows still allows its temporary file.
    fd, name = tempfile.mkstemp(prefix=f".{beside.name[:100]}.", suffix=".part", dir=beside.parent)
    os.close(fd)
    return Path(name)


def put_in_place(
    built: Path,
    target: Path,
    *,
    replace: Callable[[Path, Path], None] = os.replace,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> None:
    """Move a file built by `temporary` onto `target`, in one step: a reader sees the
    old file or the new one, never a part."""
    deadline = clock() + REPLACE_RETRY_S
    while True:
        try:
            replace(built, target)
            break
        except PermissionError:
            # On Windows: the target is open in another process for a moment.
            if not _RETRY_REPLACE or clock() >= deadline:
                raise
            pause(0.1)
    sync_folder(target.parent)


def sync_folder(folder: Path) -> None:
    """Make a new or replaced name in `folder` survive a power cut, where folders
    can be opened (not on Windows, where the rename is already written through)."""
    if sys.platform == "win32":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            sync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[IO[str]]:
    """A private text file to write `path` whole: built beside it, synced, and moved
    into place when the block ends without error; removed otherwise."""
    target = Path(os.path.realpath(path))
    built = temporary(target)
    try:
        with open_private(built) as out:
            yield out
            out.flush()
            sync(out.fileno())
        put_in_place(built, target)
    finally:
        with contextlib.suppress(OSError):
            built.unlink(missing_ok=True)


def longest_name(folder: Path) -> int:
    """The longest file name `folder` takes, in bytes (255 where the system cannot
    say: Windows, whose NTFS takes 255 characters)."""
    pathconf = getattr(os, "pathconf", None)
    if pathconf is not None:
        with contextlib.suppress(OSError, ValueError):
            return int(pathconf(folder if folder.is_dir() else "/", "PC_NAME_MAX"))
    return 255


def case_insensitive(folder: Path) -> bool:
    """Whether names in `folder` (or its nearest existing parent) ignore case: true on
    the default filesystems of macOS and Windows. Told by looking a name of the path up
    in the other case; a path without letters gets the platform's default."""
    here = _existing(Path(os.path.abspath(folder)))
    for part in (here, *here.parents):
        other = part.name.swapcase()
        if other == part.name:
            continue
        try:
            return os.path.samefile(part, part.with_name(other))
        except OSError:
            return False  # the other spelling does not exist: case counts here
    return sys.platform in ("darwin", "win32")


def path_key(path: str) -> str:
    """`path` made absolute, as a key for the files a run keeps per input (its journal,
    its lock): case-folded where the filesystem ignores case, so `Leads.csv` and
    `leads.csv` name one file and get one journal. Links are not followed."""
    if path == "-":
        return path
    absolute = os.path.normcase(os.path.abspath(path))
    return absolute.casefold() if case_insensitive(Path(absolute).parent) else absolute


FileId = tuple[int, int]
# How files the run reads besides its inputs are named in `check_output`'s `inputs`.
READ_BY_THE_RUN = "the file "


def file_id(path: Path | str | int) -> FileId | None:
    """The identity of an existing file (device and inode, symlinks followed), or of an
    open descriptor, else None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def check_output(
    name: str,
    path: Path,
    *,
    folder_may_be_made: bool = False,
    inputs: dict[FileId, str] | None = None,
) -> None:
    """Refuse an output path that is not a regular file (or a new one in an existing,
    writable folder), or that is one of the run's `inputs` (by identity: a link or
    another spelling of an input is the input), before anything is read or sent: a
    report is built beside its path and moved into place, the journal gets a lock
    file beside it, and opening a pipe could wait forever."""
    if not path.name or path.name in (".", ".."):
        raise UsageError(f"{name} {str(path)!r}: is a folder, not a file")
    try:
        _check_place(name, path, folder_may_be_made)
    except OSError as exc:  # a name too long for the system, a loop of links...
        raise UsageError(f"{name} {path}: {exc.strerror or exc}") from None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # absent (created), or the open will say what is wrong
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"{name} {path}: is a folder, not a file")
    if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        raise UsageError(f"{name} {path}: is a pipe, not a file")
    special = mode is not None and not stat.S_ISREG(mode)
    if special or str(path).startswith(("/dev/", "/proc/")):
        # /dev/stdout redirected to a file is a regular file too: still not ours to replace.
        raise UsageError(f"{name} {path}: is a device, not a file")
    same = (inputs or {}).get(file_id(path) or (-1, -1))
    if same is not None and same.startswith(READ_BY_THE_RUN):
        # The token file, .env, the CA bundle: read by the run, never written.
        raise UsageError(f"{name} {path}: is {same}, which this run reads: name another file")
    if same is not None:
        shown = "stdin" if same == "-" else repr(same)
        raise UsageError(
            f"{name} {path}: is an input of this run ({shown}); inputs are never "
            "overwritten: name another file"
        )


def _check_place(name: str, path: Path, folder_may_be_made: bool) -> None:
    """The folder exists and is writable (unless the run makes it), and the name fits
    in it."""
    folder = Path(os.path.realpath(path)).parent
    # The folder as the user would look for it: a link's own when `path` is one.
    shown = path.parent if folder == Path(os.path.realpath(path.parent)) else folder
    if not folder_may_be_made:
        if not folder.is_dir():
            raise UsageError(f"{name} {path}: the folder {shown} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{name} {path}: the folder {shown} is not writable")
    if len(os.fsencode(path.name)) > longest_name(folder):
        raise UsageError(f"{name} {path}: the file name is too long for its folder")
