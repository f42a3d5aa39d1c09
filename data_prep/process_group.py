"""Running a program (``yt-dlp``) with a time limit, in a process group of its own that is ended as a whole.

yt-dlp starts ffmpeg to cut sections; killing yt-dlp alone leaves ffmpeg running, orphaned, holding the network
and the partial file. So each call starts a new session (its own process group, the program's children in it),
and when the call runs past its time limit, or when the step stops (Ctrl-C, ``kill``), the whole group is killed.
A new session also takes the program out of the terminal's foreground group, so Ctrl-C no longer reaches it by
itself: :meth:`ProcessGroups.stop` ends every group still running, and starts no new one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass


class Stopped(Exception):
    """The step is stopping: no program is started any more, and no pause waited out."""


@dataclass(frozen=True)
class Finished:
    """How a call ended.

    Args:
        returncode: the program's exit status; None when it ran past its time limit and was killed.
        stderr: what it wrote to stderr (up to the kill).
    """

    returncode: int | None
    stderr: str


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the process group led by ``proc`` (only while ``proc`` is not reaped: its pid then names that group)."""
    if proc.returncode is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except ProcessLookupError:  # the group is gone already
        pass


class ProcessGroups:
    """The programs that the threads of one step run, each in its own process group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopped = threading.Event()

    def run(self, cmd: Sequence[str], timeout: float) -> Finished:
        """Run ``cmd`` (stdout discarded) and wait at most ``timeout`` seconds; then kill its process group.

        Raises:
            Stopped: :meth:`stop` was called.
        """
        with self._lock:
            if self._stopped.is_set():
                raise Stopped("stopping: no new call")
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True, errors="replace", start_new_session=os.name == "posix")
            self._running.add(proc)
        try:
            try:
                _, stderr = proc.communicate(timeout=timeout)
                return Finished(proc.returncode, stderr)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                _, stderr = proc.communicate()  # the pipe closes once the whole group is dead
                return Finished(None, stderr or "")
        except BaseException:  # Ctrl-C or kill in the thread that waits (one job): no orphan either
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            with self._lock:
                self._running.discard(proc)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry's backoff), or less if :meth:`stop` is called meanwhile.

        Raises:
            Stopped: :meth:`stop` was called.
        """
        if self._stopped.wait(max(seconds, 0.0)):
            raise Stopped("stopping: no retry")

    def stop(self) -> None:
        """Kill every process group still running and start no new one (threads waiting on them return at once)."""
        with self._lock:
            self._stopped.set()
            for proc in self._running:
                _kill_group(proc)
