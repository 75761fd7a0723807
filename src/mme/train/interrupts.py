"""Stopping a run cleanly on Ctrl-C (SIGINT) or a scheduler's pre-emption (SIGTERM).

The first signal asks the training loop to stop after the current step: it writes a checkpoint of that step and
ends with :class:`~mme.errors.Interrupted`, whose message says how to resume. A second signal stops at once
(KeyboardInterrupt). Data-loader workers leave the job's process group (:func:`ignore_in_worker`): a Ctrl-C, which
the terminal sends to the whole group, and a scheduler's or torchrun's SIGTERM, sent to the whole group too,
reach the main process only, so the workers are not killed under the step that is finishing (a killed worker
failed that step, and its checkpoint with it). They still end with the main process: it stops them, and they
watch it. They keep SIGTERM, by which the loader (and Python at exit) stops a worker that does not end by itself.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """While entered (from the main thread; elsewhere it does nothing), ``received`` is the first signal caught,
    or None."""

    def __init__(self):
        self.received: signal.Signals | None = None
        self._previous: dict = {}

    def _catch(self, signum, frame) -> None:
        if self.received is not None:  # the second one: at once
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        log.warning("%s: stopping after this step with a checkpoint (again to stop at once)", self.received.name)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._catch) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def ignore_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: leave Ctrl-C and group-wide SIGTERMs to the main process, which stops the
    workers itself (module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpgid(0, 0)
