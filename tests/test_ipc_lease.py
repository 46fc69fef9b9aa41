"""Leases (``_ipc_lease``): real files, real ``flock`` and real processes. A consumer that holds a lease
pins it; one that releases it, exits, or is SIGKILLed lets the producer end it; nobody opening it lets
it end after the unopened timeout; a late consumer is told, never handed freed memory."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import gpuimage
from fake_ipc import end_every_lease
from gpuimage import InteropError, LifetimeError, SpecError, _ipc_lease
from gpuimage._ipc_lease import Hold, Lease, check_lease_path, collect_shared, lookup, probe, share


class Source:
    """Stands in for an image: what a lease keeps alive."""


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    previous = gpuimage.set_unopened_timeout(60.0)
    yield
    end_every_lease()
    collect_shared()
    gpuimage.set_unopened_timeout(previous)


def _child(code: str) -> subprocess.Popen[str]:
    """A Python process running ``code``; it prints one line once it holds what it takes."""
    script = "import sys, time\nsys.path[:0] = " + repr(sys.path) + "\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


HOLDER = """
from gpuimage._ipc_lease import Hold
hold = Hold.take(sys.argv[1] if len(sys.argv) > 1 else {path!r}, where="child")
print("held", flush=True)
time.sleep(60)
"""


def test_a_held_lease_stays_and_a_released_one_ends() -> None:
    lease = share(Source())
    assert collect_shared() == 1
    hold = Hold.take(lease.path, where="test")
    assert probe(lease) == "held"
    assert collect_shared() == 1, "held: the producer keeps the memory"
    hold.release()
    hold.release()  # idempotent
    assert probe(lease) == "released"
    assert collect_shared() == 0
    assert not os.path.exists(lease.path)
    assert probe(lease) == "released"


def test_an_unopened_lease_ends_after_the_timeout_only() -> None:
    lease = share(Source())
    assert probe(lease) == "unopened"
    assert collect_shared() == 1
    gpuimage.set_unopened_timeout(0.05)
    time.sleep(0.06)
    assert collect_shared() == 0
    assert probe(lease) == "expired"
    with pytest.raises(LifetimeError, match="is gone") as raised:
        Hold.take(lease.path, where="pickle.loads(image)")
    assert "0.05 s" in str(raised.value)


def test_a_sigkilled_holder_lets_go() -> None:
    lease = share(Source())
    child = _child(HOLDER.format(path=lease.path))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        assert collect_shared() == 1
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL
    assert probe(lease) == "released", "the OS dropped the dead process's lock"
    assert collect_shared() == 0
    assert not os.path.exists(lease.path)


def test_a_holder_that_exits_without_releasing_lets_go() -> None:
    lease = share(Source())
    child = _child(f"from gpuimage._ipc_lease import Hold\nhold = Hold.take({lease.path!r}, where='child')\n")
    assert child.wait(timeout=60) == 0
    assert collect_shared() == 0


def test_a_consumer_that_locks_after_the_producer_ended_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    lease = share(Source())
    real_flock = fcntl.flock

    def late(fd: int, operation: int) -> None:  # the producer ends the lease between open and lock
        lease.end()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", late)
    with pytest.raises(LifetimeError, match="is gone"):
        Hold.take(lease.path, where="test")


def test_a_lease_held_exclusively_too_long_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    lease = share(Source())
    monkeypatch.setattr(_ipc_lease, "_HOLD_WAIT_S", 0.01)
    fcntl.flock(lease.fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(LifetimeError, match="locked all along"):
            Hold.take(lease.path, where="test")
    finally:
        fcntl.flock(lease.fd, fcntl.LOCK_UN)


def test_a_lease_opened_here_ends_at_the_next_poll_and_its_source_is_returned() -> None:
    source = Source()
    lease = share(source)
    assert lookup(lease.path) is source
    assert lease.was_opened()
    assert collect_shared() == 0
    assert lookup(lease.path) is None


def test_a_limited_poll_moves_on_to_other_leases() -> None:
    leases = [share(Source()) for _ in range(4)]
    holds = [Hold.take(lease.path, where="test") for lease in leases[:3]]
    assert collect_shared(limit=3) == 4  # three held ones seen first: the released one waits
    holds[0].release()
    assert collect_shared() == 3
    del holds


def test_set_unopened_timeout_returns_the_previous_value() -> None:
    assert gpuimage.set_unopened_timeout(5) == 60.0
    assert gpuimage.unopened_timeout() == 5.0


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), True, "60", None], ids=repr)
def test_set_unopened_timeout_refuses_what_is_not_a_duration(seconds: object) -> None:
    with pytest.raises(SpecError, match="positive number of seconds"):
        gpuimage.set_unopened_timeout(seconds)  # type: ignore[arg-type]


# -- paths and directories ---------------------------------------------------------------------------

GOOD = "/dev/shm/gpuimage-ipc-1000-4026531836-77-0123456789abcdef/12.lease"


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "relative/gpuimage-ipc-1000-4026531836-77-0123456789abcdef/12.lease",
        "/dev/shm/gpuimage-ipc-1000-4026531836-77-0123456789abcdef/../12.lease",
        "/dev/shm/gpuimage-ipc-1000-77-0123456789abcdef/12.lease",
        "/dev/shm/gpuimage-ipc-1000-4026531836-77-0123456789abcdef/12.lease.old",
        "/dev/shm/gpuimage-ipc-1000-4026531836-77-0123456789abcdef/passwd",
        7,
        None,
    ],
    ids=repr,
)
def test_only_gpuimage_lease_files_are_opened(path: object) -> None:
    with pytest.raises(InteropError, match="expected a gpuimage lease file"):
        check_lease_path(path, where="test")


def test_lease_files_and_ring_files_are_accepted() -> None:
    for name in ("12.lease", "3.ctl", "4.writer"):
        assert check_lease_path(GOOD.replace("12.lease", name), where="test").endswith(name)


def test_the_directory_moves_with_the_environment_and_stale_ones_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = _ipc_lease._pid_namespace()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"gpuimage-ipc-{os.getuid()}-{namespace}-{int(dead.stdout)}-0123456789abcdef"
    alive = tmp_path / f"gpuimage-ipc-{os.getuid()}-{namespace}-{os.getppid()}-0123456789abcdef"
    foreign = tmp_path / f"gpuimage-ipc-{os.getuid()}-{namespace + 1}-{int(dead.stdout)}-0123456789abcdef"
    for directory in (stale, alive, foreign):
        directory.mkdir()
    monkeypatch.setenv("GPUIMAGE_IPC_DIR", str(tmp_path))
    monkeypatch.setattr(_ipc_lease._Process, "directory", None)
    made = Path(_ipc_lease.lease_directory())
    assert made.parent == tmp_path
    assert made.name.startswith(f"gpuimage-ipc-{os.getuid()}-{namespace}-{os.getpid()}-")
    assert not stale.exists(), "the directory of a dead producer is removed"
    assert alive.exists(), "a live one is kept"
    assert foreign.exists(), "one of another PID namespace is not ours to judge"
    path, fd = _ipc_lease.make_file(".lease")
    os.close(fd)
    assert check_lease_path(path, where="test") == path


def test_a_forked_child_forgets_its_parent_s_leases() -> None:
    child = _child(
        """
        import os
        from gpuimage._ipc_lease import collect_shared, process_token, share
        lease = share(object())
        token = process_token()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if collect_shared() == 0 and process_token() != token else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), os.path.exists(lease.path), collect_shared())
        """
    )
    assert child.stdout is not None
    assert child.stdout.read().split() == ["0", "True", "1"]
    assert child.wait(timeout=60) == 0


def test_a_lease_whose_descriptor_was_closed_counts_as_released() -> None:
    lease = share(Source())
    os.close(lease.fd)
    assert lease.poll(time.monotonic(), 60.0)
    assert isinstance(lease, Lease)
    assert collect_shared() == 0
