"""Stopping a run cleanly on Ctrl-C (SIGINT) or a scheduler's pre-emption (SIGTERM), or its warning before a time
limit (SIGUSR1: Slurm's ``sbatch --signal=USR1@120``, as Lightning-style requeueing asks for), taken as SIGTERM.

The first signal asks the training loop to stop after the current step: it writes a checkpoint of that step and ends
with :class:`~mme.errors.Interrupted`, whose message says how to resume (on the run's last step, or after it, that
the run is finished: the exception carries its result, for a caller that keeps it before it stops too). A second Ctrl-C
stops at once (KeyboardInterrupt); a repeated SIGTERM does not: torchrun forwards each one it gets and a scheduler
signals every process of the job, torchrun too, so a rank gets two a few ms apart; the sender's SIGKILL after its
grace period stops at once (during a command's imports, in the mme command's own process, a second Ctrl-C or SIGTERM
ends it at once: nothing is written yet, :func:`mme.cli._command_module`). Data-loader workers leave the job's process
group (:func:`ignore_in_worker`): a Ctrl-C, which the terminal sends to the whole group, and a scheduler's or
torchrun's SIGTERM, sent to the whole group too, reach the main process only, so the workers are not killed under the
step that is finishing (a killed worker failed that step, and its checkpoint with it). They still end with the main
process: it stops them, and they watch it. They keep SIGTERM, by which the loader (and Python at exit) stops a worker
that does not end by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

TERMINATING = (signal.SIGTERM, signal.SIGUSR1)
"""The signals taken as a scheduler's SIGTERM: a run stops after its step with a checkpoint, a repeated one is absorbed,
a command ends with exit status 128 + the signal's number (143, 138) and its line ``stopped by SIGUSR1``; by
default a SIGUSR1 ended the process at once, without a word or a checkpoint (exit 138)."""
SIGNALS = (signal.SIGINT, *TERMINATING)


class HeldBack:
    """While entered (from the main thread; elsewhere it does nothing), SIGINT and :data:`TERMINATING` are recorded in
    ``received`` (the first) and nothing else: the caller acts on it once the work under it is done (as
    :meth:`raise_received`). For a job's teardown (:func:`mme.train.engine.finish`), where a handler's exception would
    be raised inside the garbage collector's weakref callbacks, which drop it, or cut the teardown short, leaving the
    caller with the run's threads and generators; for a command's imports (:mod:`mme.cli`), where torch's native
    start-up drops it or aborts. Python-level handlers, not a thread's signal mask: a signal sent to the process reaches
    whichever of its threads does not block it (tqdm's monitor), and Python runs its handler in the main thread.
    ``again``: called with a signal that comes after the first, in the handler (default: it is held too)."""

    def __init__(self, again: Callable[[signal.Signals], None] | None = None):
        self.received: signal.Signals | None = None
        self._previous: dict = {}
        self._again = again

    def _catch(self, signum, frame) -> None:
        if self.received is not None and self._again is not None:
            self._again(signal.Signals(signum))
        self.received = self.received or signal.Signals(signum)

    def __enter__(self) -> HeldBack:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._catch) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def raise_received(self) -> None:
        """Send the signal received (if any) again, now that the handlers from before are back: what it would have
        done under the held-back work, it does now."""
        if self.received is not None:
            signal.raise_signal(self.received)


class WaitStopped(BaseException):
    """A stop signal that came while a step waited for its data (:meth:`StopRequests.waiting`). A BaseException:
    torch's wait for a loader's batch lets an Exception of the wait through only after its own checks."""


class StopRequests(HeldBack):
    """While entered (from the main thread; elsewhere it does nothing), ``received`` is the first signal caught,
    or None, said in the log; a second Ctrl-C stops at once. ``steps_over``: the loop's steps are done, so one caught
    now is said to end the run as stopped, with no step after it."""

    def __init__(self):
        super().__init__()
        self.steps_over = False
        self._waiting = False

    @contextlib.contextmanager
    def waiting(self, received_in_step: bool = False) -> Iterator[None]:
        """While entered, a stop signal (the first, or a repeated SIGTERM) ends the block at once with
        :class:`WaitStopped`: a step that waits for a batch a loader worker may never send (one stopped, or hung on a
        read) has changed nothing yet, so the run stops with a checkpoint of the step before (otherwise it waited
        for good, its checkpoint never written). Entered for a step's later micro-batch with a stop received during
        the micro-batches before (``received_in_step``; their gradients are then dropped), it raises at once: the
        wait it enters may be for good too. One received before the step began (a dropped Ctrl-C taken as the loop
        starts, :meth:`__enter__`; a signal after the step before's check) stops it after the step, as promised."""
        if received_in_step:
            self._wait_stopped()
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    def _catch(self, signum, frame) -> None:
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            if self._waiting:
                raise WaitStopped
            return  # a repeated SIGTERM (module docstring)
        self.received = signal.Signals(signum)
        if self._waiting:
            self._wait_stopped()
        if self.steps_over:
            log.warning("%s after the run's last step: no step follows; it ends as stopped (exit %d), its last "
                        "checkpoint kept", self.received.name, 128 + signum)
        else:  # (under torchrun the step ends on every rank or none: torchrun's SIGTERM as another rank ended)
            dist = sys.modules.get("torch.distributed")  # (not imported here: this module is, before torch)
            ranks = dist is not None and dist.is_initialized() and dist.get_world_size() > 1
            log.warning("%s: stopping after this step with a checkpoint%s (%s)", self.received.name,
                        ", once every rank has finished it" if ranks else "",
                        "Ctrl-C again to stop at once" if signum == signal.SIGINT else
                        "another SIGTERM or SIGUSR1 is taken as this one; Ctrl-C stops at once")

    def _wait_stopped(self) -> None:
        log.warning("%s while the step waits for its data: stopping with the checkpoint of the step before (none "
                    "before a fresh run's first step)", self.received.name)
        raise WaitStopped

    def __enter__(self) -> StopRequests:
        """A signal the command recorded before, whose exception Python dropped (:class:`StageStops`), is taken as
        one caught now: the run stops after its next step with a checkpoint (else it trained every step, then the
        command said it was interrupted)."""
        super().__enter__()
        if (recorded := _take_recorded()) is not None:
            self._catch(recorded, None)
        return self


class StageStops(HeldBack):
    """While entered (from the main thread), a SIGINT, SIGTERM or SIGUSR1 that a Python handler takes (Ctrl-C's
    KeyboardInterrupt, :func:`sigterm_as_interrupt`'s :class:`Terminated`) is also recorded in ``received``, then
    handled as before: one whose exception was raised where Python drops it (a weakref callback or ``__del__`` run
    by the garbage collector, which prints "Exception ignored") is still there for a command that checks
    ``received`` between its stages, and acts once more: taken by a training loop as it starts (its
    :class:`StopRequests`, which takes the signals while a run trains), else raised again after the next item of a
    long pass (:func:`raise_recorded`)."""

    def __init__(self):
        super().__init__()
        self._pid = os.getpid()
        self._taken = False  # its signal acted on once more (:func:`_take_recorded`)

    def _catch(self, signum, frame) -> None:
        if os.getpid() == self._pid:  # (not in a forked worker, which handles it as before)
            self.received = self.received or signal.Signals(signum)
        self._previous[signum](signum, frame)

    def __enter__(self) -> StageStops:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                if callable(signal.getsignal(s)):
                    self._previous[s] = signal.signal(s, self._catch)
            _recording.append(self)
        return self

    def __exit__(self, *exc) -> None:
        if self in _recording:
            _recording.remove(self)
        super().__exit__(*exc)


_recording: list[StageStops] = []
"""The :class:`StageStops` entered, whose signals :func:`_take_recorded` gives."""


def _take_recorded() -> signal.Signals | None:
    """The signal an entered :class:`StageStops` of this process recorded (its exception, raised where it was caught,
    did not come out: Python dropped it, or the caller would not be here), unless it was taken already: each is given
    once (by nested ones, as mme demo's in the CLI's, once in all), so that it acts once, not again as a second
    Ctrl-C (at once, no checkpoint). None outside the main thread: Python runs the handlers in the main thread, which
    a signal sent from another would interrupt at whatever it does."""
    if threading.current_thread() is not threading.main_thread():
        return None
    recorded = [stops for stops in _recording
                if stops._pid == os.getpid() and stops.received is not None and not stops._taken]
    for stops in recorded:
        stops._taken = True
    return recorded[0].received if recorded else None


def raise_recorded() -> None:
    """Send again, here, a signal the command recorded whose exception Python dropped (:func:`_take_recorded`). After
    each item of a long pass (:func:`mme.utils.progress_bar`): such a Ctrl-C or SIGTERM stops the command at its next
    batch or video, not once all of its work is done (``mme embed`` embedded the whole list, hours on Kinetics,
    before it said it was interrupted)."""
    if (recorded := _take_recorded()) is not None:
        signal.raise_signal(recorded)


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGUSR1, :data:`TERMINATING`) outside the training loop's :class:`StopRequests` (start-up, a job
    without one): the command stops as on Ctrl-C, saying what is kept, with exit status 128 + the signal's number
    (143, 138: it ended without a word). ``signal``: the one received."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__()
        self.signal = signal.Signals(signum)


def stopped_by(e: KeyboardInterrupt) -> signal.Signals:
    """The signal whose handler raised ``e``: a :class:`Terminated`'s, else Ctrl-C's SIGINT."""
    return e.signal if isinstance(e, Terminated) else signal.SIGINT


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While entered, SIGTERM and SIGUSR1 (:data:`TERMINATING`) raise :class:`Terminated` in this process; a forked
    child (a loader or pool worker) dies of it as by default."""
    pid = os.getpid()

    def stop(signum, frame) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, stop) for s in TERMINATING}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def ignore_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: leave Ctrl-C and group-wide SIGTERMs to the main process, which stops the
    workers itself (module docstring). Out of the terminal's process group, a worker's write to it would stop the
    worker where the terminal has ``tostop`` set (SIGTTOU), and the loader wait for it forever: it writes instead."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # (Slurm's --signal=USR1 reaches every process of the job step)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.setpgid(0, 0)
