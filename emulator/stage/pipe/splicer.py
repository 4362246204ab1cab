"""Big regular files spliced into a FIFO by a helper process, not by the feeder thread.

Why a process: the feeder thread needs the GIL back after every splice(2), and the emulator's
other threads hold it for milliseconds at a time (the supervisor's engine poll goes through
requests and docker-py). A 1 MiB pipe (/proc/sys/fs/pipe-max-size) is read empty in about
0.15 ms at page-cache speed, so every such wait is time the reader in the container sits
idle: profiled, Pipe mode read at 0.72-0.76x of File mode with the splice loop in a thread, and
at about 0.9x with the same loop in a process of its own.

The helper is a small Python program (``python -I -S``, no emulator import) started once per
channel, on the first big file. Requests go over a SOCK_SEQPACKET socket pair: the FIFO's and
the source file's fds (SCM_RIGHTS), an offset and a count; the reply says how many bytes were
moved and the errno that stopped it (0: none). The feeder keeps up to two requests of at most
REQUEST bytes in flight, so the helper always has the next one when it finishes a request, and
the feeder checks its stop flag between requests. Nothing else writes the FIFO while requests
are in flight (FifoWriter waits for the replies before its own writes), so bytes keep their
order. The helper closes the fds it got after each request: the reader sees EOF when the
feeder closes its own.

Waiting for room: a reader with a big buffer empties the whole pipe in one read, holding the
pipe's lock, and only then wakes the writer, which must refill it before the reader's next read
finds data; the two alternate, a wake-up each way per pipe-full. On a virtual machine a wake-up
of a halted vCPU costs tens of microseconds against ~130 us to copy 1 MiB, so when the kernel
runs the reader and the helper on different vCPUs, Pipe read at 0.75-0.80x of File mode. So
the helper waits for room awake: it retries a non-blocking splice for up to SPIN_BUDGET (the
kernel hands the pipe's lock over as soon as the reader lets go, no sleep on either side), and
sleeps in a blocking splice only when that budget runs out. A budget that runs out means the
reader is busy elsewhere, or shares the helper's CPU (where spinning would only delay it: 0.55x
when spinning always): the helper then sleeps for the next 2, 4, ... up to MAX_BACKOFF splices
before it spins again, so a slow reader or a shared CPU costs at most one budget per
MAX_BACKOFF splices. ``benchmarks/pipe_throughput.py --only large --pin apart|same`` (8 x 256
MiB, 3 jobs): pinned apart 0.74-0.85x before, 0.86-1.00x after; pinned together 0.88-0.91x
before, 0.84-0.92x after.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import subprocess
import sys
from collections import deque

log = logging.getLogger(__name__)

REQUEST = 32 * 1024 * 1024  # bytes per request: bounds what stop() must drain
IN_FLIGHT = 2  # requests queued at the helper
_REQUEST = struct.Struct("<qq")  # offset, count
_REPLY = struct.Struct("<qi")  # bytes moved, errno (0: none)

SPIN_BUDGET = 250e-6  # seconds to wait for room awake: about twice a 1 MiB pipe's read time
MAX_BACKOFF = 64  # splices done asleep, at most, after a budget ran out

# The helper: splice each request in steps of `step` bytes, then reply. `put` waits for room as
# the module docstring says: `rest` splices are left to do asleep, and the next budget that
# runs out earns `backoff` of them. SIGPIPE is ignored by Python, so a reader that closed early
# gives EPIPE, which is replied like any error.
_PROGRAM = """\
import os,socket,struct,sys,time
step,budget,most=int(sys.argv[1]),float(sys.argv[3]),int(sys.argv[4])
Q=struct.Struct('<qq');R=struct.Struct('<qi');clock=time.perf_counter;NB=os.SPLICE_F_NONBLOCK
s=socket.socket(fileno=int(sys.argv[2]))
rest=0;backoff=1
def put(src,dst,count,offset):
 global rest,backoff
 if rest:
  rest-=1;return os.splice(src,dst,count,offset_src=offset)
 try:return os.splice(src,dst,count,offset_src=offset,flags=NB)
 except BlockingIOError:pass
 end=clock()+budget
 while clock()<end:
  try:moved=os.splice(src,dst,count,offset_src=offset,flags=NB)
  except BlockingIOError:continue
  backoff=1;return moved
 backoff=min(2*backoff,most);rest=backoff
 return os.splice(src,dst,count,offset_src=offset)
while True:
 m,fds,_,_=socket.recv_fds(s,Q.size,2)
 if not m:break
 off,cnt=Q.unpack(m);src,dst=fds;moved=0;err=0
 try:
  while moved<cnt:
   n=put(src,dst,min(step,cnt-moved),off+moved)
   if not n:break
   moved+=n
 except OSError as e:err=e.errno or -1
 os.close(src);os.close(dst)
 s.send(R.pack(moved,err))
"""


class SplicerGone(OSError):
    """The helper process ended or could not be reached."""


class Splicer:
    """One helper process; ``submit`` queues a splice, ``collect`` gets the oldest reply."""

    def __init__(self, step: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _PROGRAM,
                    str(step),
                    str(theirs.fileno()),
                    repr(SPIN_BUDGET),
                    str(MAX_BACKOFF),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self._socket = ours
        self._pending: deque[int] = deque()  # counts of the requests in flight

    @property
    def busy(self) -> int:
        return len(self._pending)

    def submit(self, src: int, dst: int, offset: int, count: int) -> None:
        try:
            socket.send_fds(self._socket, [_REQUEST.pack(offset, count)], [src, dst])
        except OSError as exc:
            raise SplicerGone(exc.errno, f"Pipe splice helper unreachable: {exc}") from exc
        self._pending.append(count)

    def collect(self) -> tuple[int, int, int]:
        """(count asked, bytes moved, errno) of the oldest request in flight."""
        count = self._pending.popleft()
        try:
            reply = self._socket.recv(_REPLY.size)
        except OSError as exc:
            raise SplicerGone(exc.errno, f"Pipe splice helper unreachable: {exc}") from exc
        if len(reply) != _REPLY.size:
            raise SplicerGone(0, "Pipe splice helper ended unexpectedly")
        moved, error = _REPLY.unpack(reply)
        return count, moved, error

    def close(self) -> None:
        """End the helper (it exits when its socket closes) and reap it."""
        self._socket.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.warning("Pipe splice helper did not exit; killing it")
            self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)


class LazySplicer:
    """A channel's helper, started on first use; None from ``get`` once it cannot be had
    (the feeder then splices in its own thread, as fast as the GIL lets it)."""

    def __init__(self, step: int) -> None:
        self._step = step
        self._splicer: Splicer | None = None
        self._failed = False

    def get(self) -> Splicer | None:
        if self._splicer is None and not self._failed:
            try:
                self._splicer = Splicer(self._step)
            except (OSError, ValueError) as exc:
                log.warning("Pipe splice helper not started (%s); splicing in-process", exc)
                self._failed = True
        return self._splicer

    def close(self) -> None:
        splicer, self._splicer = self._splicer, None
        if splicer is not None:
            splicer.close()
