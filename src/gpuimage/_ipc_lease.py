"""Leases: how a process that shared memory learns that every other process let go of it, even one
killed with SIGKILL. Files and ``fcntl.flock`` only: no GPU call, no foreign library.

The protocol (``docs/processes.md``):

1. Pickling a device image creates one *lease file* for that description, in the producer's lease
   directory (``/dev/shm/gpuimage-ipc-<uid>-<ns>-<pid>-<token>/``, else the temporary directory; the
   environment variable ``GPUIMAGE_IPC_DIR`` moves it), and registers what must stay alive (the
   image, the event of its ready point) under the file's path (``share``).
2. A consumer that unpickles it opens the file, takes a *shared* ``flock`` on it and appends one byte
   (it was opened). It keeps the lock while any image of that description lives in it and its GPU
   work on it is queued (``Hold``), then closes the file. The OS drops the lock when the process
   ends, however it ends: a SIGKILLed consumer never pins memory.
3. The producer polls (on each pickling, after garbage collections, in ``collect_shared()``): once it
   can take the *exclusive* lock without waiting, and the file says it was opened (or it never was
   and ``unopened_timeout()`` seconds passed since pickling), it unlinks the file and lets go.
4. A consumer that finds the file gone, or unlinked once it holds its lock, came too late: the
   memory may already be reused, and it raises ``LifetimeError``.

A description opened in the process that made it returns the original object (``lookup``).
Processes forked from a producer forget its leases; a consumer's children inherit its held locks and
keep them until they exit.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from typing import Literal, cast

from ._errors import InteropError, LifetimeError, SpecError
from ._lifetime import add_collector

__all__ = ["Hold", "Lease", "check_lease_path", "collect_shared", "is_this_process", "lease_directory",
           "lookup", "make_file", "probe", "process_token", "set_unopened_timeout", "share",
           "unopened_timeout"]  # fmt: skip

_DIRECTORY = re.compile(r"gpuimage-ipc-(\d+)-(\d+)-(\d+)-([0-9a-f]{16})")
"""``gpuimage-ipc-<uid>-<pid namespace>-<pid>-<token>``: a pid means something in its namespace only."""
_FILE = re.compile(r"\d+\.(lease|ctl|writer)")
_HOLD_WAIT_S = 5.0  # a producer holds the exclusive lock for a few microseconds per poll


class Lease:
    """The producer's side of one lease file (see the module): ``poll`` ends it once openers let go."""

    __slots__ = ("created", "ended", "fd", "opened_at_end", "opened_here", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd
        self.created = time.monotonic()
        self.ended = self.opened_at_end = False
        self.opened_here = False  # opened in this process, which got the original object

    def was_opened(self) -> bool:
        """Whether a process opened the description (also one that has let go since)."""
        if self.opened_here:
            return True
        try:
            return os.fstat(self.fd).st_size > 0
        except OSError:  # ended: the file is gone
            return True

    def poll(self, now: float, timeout: float) -> bool:
        """End the lease when nobody holds it and it was opened, or was never opened for ``timeout``
        seconds; True once it has ended. Never blocks, never raises."""
        if self.ended:
            return True
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a consumer holds it
        except OSError:  # the descriptor is gone (closed behind our back): nothing can hold it
            self.end()
            return True
        if self.was_opened() or now - self.created >= timeout:
            self.end()  # unlinked while the exclusive lock is held: a late opener sees it gone
            return True
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return False

    def probe(self) -> Literal["held", "unopened", "released", "expired"]:
        """Whether a process holds the lease now, or released it, or none opened it yet, or none did
        before it ended. Never blocks; call it with the registry's lock (``probe``)."""
        if self.ended:
            return "released" if self.opened_at_end else "expired"
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held"
        except OSError:
            return "released"
        opened = self.was_opened()
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return "released" if opened else "unopened"

    def end(self) -> None:
        """Unlink the file and close it (idempotent, never raises)."""
        if not self.ended:
            self.opened_at_end = self.was_opened()
            self.ended = True
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):
                os.close(self.fd)


class Hold:
    """A consumer's shared lock on a lease file: the producer keeps the memory while it is held."""

    __slots__ = ("_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def take(cls, path: str, *, where: str, mark: bool = True) -> Hold:
        """Open ``path``, lock it shared and (``mark``) append the byte that says it was opened.

        Raises:
            LifetimeError: the lease is gone: the producer let go of the memory, or exited.
        """
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _gone(path, where) from None
        except OSError as exc:
            raise LifetimeError(
                f"{where}: expected to open the lease file {path}, got {type(exc).__name__}: {exc}. Run the "
                "consumer as the producer's user, on the same host, with the same /dev/shm."
            ) from exc
        deadline = time.monotonic() + _HOLD_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LifetimeError(
                        f"{where}: expected the producer to release its lease file {path} within "
                        f"{_HOLD_WAIT_S} s, got it locked all along. Check that the producer is not stopped."
                    ) from None
                time.sleep(0.001)
        if os.fstat(fd).st_nlink == 0:  # the producer ended the lease just before we locked it
            os.close(fd)
            raise _gone(path, where)
        if mark:
            os.write(fd, b"o")
        return cls(path, fd)

    def release(self) -> None:
        """Close the file: the lock goes with it (idempotent, never raises)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.release()


def _gone(path: str, where: str) -> LifetimeError:
    return LifetimeError(
        f"{where}: expected a description whose memory the producer still keeps, got one whose lease "
        f"{path} is gone (every process that opened it let go, nobody opened it within "
        f"{unopened_timeout():g} s of pickling, or the producer exited). Unpickle a description once per "
        "receiving process, soon after it was made (gpuimage.set_unopened_timeout() sets the limit)."
    )


# -- the producer's directory and registry ----------------------------------------------------------


class _Export:
    __slots__ = ("keep", "lease", "source")

    def __init__(self, lease: Lease, source: object, keep: tuple[object, ...]) -> None:
        self.lease, self.source, self.keep = lease, source, keep


class _Process:
    """This process's lease directory (None until the first pickling), token and timeout."""

    directory: str | None = None
    token: str = secrets.token_hex(8)
    timeout: float = 60.0
    polled: float = 0.0  # when the garbage collector's poll last ran
    hooked = False  # polls and the fork handler installed (at the first export)


_lock = threading.Lock()
_exports: OrderedDict[str, _Export] = OrderedDict()
_names = itertools.count()
_POLL_EVERY_S = 0.01  # garbage collections come often: the registry is polled at most this often


def process_token() -> str:
    """A random token of this process (a pid alone is reused, and differs per PID namespace)."""
    return _Process.token


def is_this_process(pid: int, token: str) -> bool:
    """Whether ``(pid, token)`` names this process (a description made here)."""
    return pid == os.getpid() and token == _Process.token


def lease_directory() -> str:
    """This process's lease directory, made on first use (stale ones of dead processes are removed)."""
    directory = _Process.directory
    if directory is None:
        base = os.environ.get("GPUIMAGE_IPC_DIR") or (
            "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else tempfile.gettempdir()
        )
        _remove_stale(base)
        name = f"gpuimage-ipc-{os.getuid()}-{_pid_namespace()}-{os.getpid()}-{_Process.token}"
        directory = os.path.join(base, name)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _Process.directory = directory
        atexit.register(_remove_directory, directory, os.getpid())
        if not _Process.hooked:  # the first export: from now on, polls come with gpuimage's own
            _Process.hooked = True
            add_collector(_poll_soon)
            os.register_at_fork(after_in_child=_forget)
    return directory


def make_file(name: str, size: int = 0) -> tuple[str, int]:
    """A new file ``<n><name>`` of ``size`` zero bytes in the lease directory: its path and an open fd."""
    path = os.path.join(lease_directory(), f"{next(_names)}{name}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    if size:
        os.ftruncate(fd, size)
    return path, fd


def share(source: object, keep: tuple[object, ...] = ()) -> Lease:
    """A lease for a new description of ``source``: ``source`` and ``keep`` stay alive until it ends."""
    collect_shared(limit=8)
    path, fd = make_file(".lease")
    lease = Lease(path, fd)
    with _lock:
        _exports[path] = _Export(lease, source, keep)
    return lease


def probe(lease: Lease) -> Literal["held", "unopened", "released", "expired"]:
    """``lease.probe()`` under the registry's lock: a poll of the same file (the same open file, whose
    lock one flock call would drop for the other) never runs at the same time."""
    with _lock:
        return lease.probe()


def lookup(path: str) -> object | None:
    """The object a description made in this process describes, or None when its lease ended."""
    with _lock:
        entry = _exports.get(path)
    if entry is None or entry.lease.ended:
        return None
    entry.lease.opened_here = True
    return entry.source


def collect_shared(*, limit: int | None = None) -> int:
    """Let go of the memory that every consumer process released; return how many descriptions made
    here still keep memory alive. Never blocks.

    A producer polls on each pickling and after garbage collections; call it after your consumers
    let go to see device memory come back at once. ``limit`` stops a poll after that many leases
    still held (a frame loop's pickling polls a few, oldest first).
    """
    if not _exports or not _lock.acquire(blocking=False):  # another thread polls: its result stands
        return len(_exports)
    ended: list[_Export] = []
    try:
        now, timeout, busy = time.monotonic(), unopened_timeout(), 0
        for path in list(_exports):
            if limit is not None and busy >= limit:
                break
            entry = _exports[path]
            if entry.lease.poll(now, timeout):
                ended.append(_exports.pop(path))
            else:
                busy += 1
                _exports.move_to_end(path)  # the next limited poll starts with others
        return len(_exports)
    finally:
        _lock.release()
        del ended  # the kept objects go here, outside the lock (their finalizers may poll)


def unopened_timeout() -> float:
    """Seconds a description may wait to be opened before its producer lets go of the memory."""
    return _Process.timeout


def set_unopened_timeout(seconds: float) -> float:
    """Set how long a pickled description keeps its memory alive before any process opens it; return
    the previous value (default 60 s).

    A description that is pickled but never unpickled (a message lost, a queue dropped) must not pin
    device memory forever: once ``seconds`` passed and nobody opened it, the producer lets go at its
    next poll, and a late open raises ``LifetimeError``. Memory that a consumer opened stays alive
    as long as the consumer holds it, however long.

    Raises:
        SpecError: ``seconds`` is not a positive finite number.
    """
    value = cast(object, seconds)  # untyped callers pass anything
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise SpecError(
            f"set_unopened_timeout(): expected a positive number of seconds, got seconds={seconds!r}."
        )
    previous = unopened_timeout()
    _Process.timeout = float(seconds)
    return previous


def check_lease_path(path: object, *, where: str) -> str:
    """``path`` if it names a file of a gpuimage lease directory, else ``InteropError``: a forged
    description must not make a consumer open (and append to) any other file."""
    if isinstance(path, str) and os.path.isabs(path) and os.path.normpath(path) == path:
        directory, name = os.path.split(path)
        if _DIRECTORY.fullmatch(os.path.basename(directory)) and _FILE.fullmatch(name):
            return path
    raise InteropError(
        f"{where}: expected a gpuimage lease file (…/gpuimage-ipc-<uid>-<ns>-<pid>-<token>/<n>.lease), got "
        f"lease={path!r}. Unpickle only descriptions that gpuimage made."
    )


def _pid_namespace() -> int:
    """The inode of this process's PID namespace (0 where /proc does not say)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _remove_stale(base: str) -> None:
    """Remove the lease directories of this user's processes that are gone (killed producers), in
    this PID namespace only (a pid of another container is not ours to test)."""
    namespace = _pid_namespace()
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            found = _DIRECTORY.fullmatch(name)
            if found is None or (int(found[1]), int(found[2])) != (os.getuid(), namespace):
                continue
            try:
                os.kill(int(found[3]), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
            except OSError:  # alive, as another user
                continue


def _remove_directory(directory: str, pid: int) -> None:
    if os.getpid() == pid:
        shutil.rmtree(directory, ignore_errors=True)


def _poll_soon() -> None:
    """``_lifetime``'s polls (garbage collections): a few leases, at most every 10 ms."""
    now = time.monotonic()
    if _exports and now - _Process.polled >= _POLL_EVERY_S:
        _Process.polled = now
        collect_shared(limit=8)


def _forget() -> None:
    """In a forked child: the parent's leases are the parent's (never end them from here)."""
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork
    for entry in _exports.values():
        with contextlib.suppress(OSError):
            os.close(entry.lease.fd)
    _exports.clear()
    _Process.directory, _Process.token = None, secrets.token_hex(8)
