"""Everything distributed, and nothing else: torchrun's environment, the process group, data sharding.

Launch (one node, 8 GPUs):   torchrun --standalone --nproc_per_node=8 -m mme.cli pretrain --config R
Multi-node: the standard torchrun rendezvous (--nnodes, --node_rank, --rdzv_endpoint); nothing here is
specific to it. Without torchrun every helper answers as a single process (rank 0 of 1).
The model never imports this module; devices are passed in.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from mme.errors import ConfigError, MMEError, ProcessLost
from mme.utils import FOLDER_LOCK, env_int, launch_ranks, read_text

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


MEETING_WAIT = timedelta(days=365)
"""How long a rank waits for the others where they meet (:func:`wait_for_ranks`): as long as the slowest rank's work
before it takes, a share of an extraction or of ``mme embed`` (hours to days). Torch's timeout of the process group
(10 minutes on NCCL, 30 on gloo) still bounds the other collectives, which the ranks reach together."""

_meeting: dist.ProcessGroup | None = None
"""The gloo group of every rank that :func:`wait_for_ranks` meets in, made by :func:`init_distributed`."""

_started_here = False
"""Whether :func:`init_distributed` has started a process group in this process: one started again after
:func:`shutdown` under torchrun (a script calling ``pretrain()`` twice) did not connect, and its job hung or failed
at its first collective."""


LOST_RANK_SIGNS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "remote process exited",
                   "NCCL communicator was aborted")
"""What the error of a collective says where another rank is gone: gloo's socket's (its peer's end closed, reset, a
write into it), NCCL's (its remote error, "remote process exited or there was a network error"; its watchdog's abort
of the communicators after a collective failed, whose reason follows: :data:`TIMEOUT_SIGNS` where it timed out)."""

TIMEOUT_SIGNS = ("collective operation timeout", "timed out", "timing out")
"""What an error says where a wait ran out (lower case): NCCL's watchdog's ("Watchdog caught collective operation
timeout: WorkNCCL(...) ran for N milliseconds before timing out", also the reason of the abort it makes), gloo's
("Timed out waiting 1800000ms for recv operation to complete"). A rank alive but slow or stuck is no lost rank."""


def lost_rank(error: BaseException) -> bool:
    """Whether ``error``, of a collective, says that another rank ended under it (killed, crashed): torch's
    DistNetworkError, or a RuntimeError (gloo's plain one, NCCL's DistBackendError) saying :data:`LOST_RANK_SIGNS`;
    not where it says a timeout (:data:`TIMEOUT_SIGNS`)."""
    text = str(error)
    said = isinstance(error, dist.DistNetworkError) or (
        isinstance(error, RuntimeError) and any(sign in text for sign in LOST_RANK_SIGNS))
    return said and not any(sign in text.lower() for sign in TIMEOUT_SIGNS)


@contextlib.contextmanager
def rank_lost_said() -> Iterator[None]:
    """A collective in the block (or the function it decorates) that fails because another rank ended
    (:func:`lost_rank`) is a ProcessLost of one line (torchrun's report on that rank's node names it and how it
    ended); other errors pass as they are."""
    try:
        yield
    except RuntimeError as e:
        if not lost_rank(e):
            raise
        raise ProcessLost("another rank ended before this one was done: torchrun's report on the node of the rank "
                          "that ended names it, with its signal where it was killed (SIGKILL: the out-of-memory "
                          "killer, or kill -9); otherwise its own last line says why") from e


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int


def rank_on_node() -> int:
    """This process's rank among those torchrun started on its node (LOCAL_RANK; 0 without torchrun)."""
    return env_int("LOCAL_RANK", 0)


def init_distributed(device: torch.device) -> DistInfo:
    """Start the process group when launched by torchrun (NCCL on a CUDA ``device``, the rank's own, which it makes
    this process's current one; gloo otherwise), and the gloo group the ranks meet in (:data:`MEETING_WAIT`); a no-op
    otherwise, and where a group is up (the caller's). Refused where this process started one before
    (:data:`_started_here`)."""
    global _meeting, _started_here
    world, local_rank = launch_ranks()[1], rank_on_node()
    if world > 1 and not dist.is_initialized():
        if _started_here:
            raise ConfigError("the process group was started by an earlier job of this process and left at its end: "
                              "it does not start again under torchrun; to run several jobs in one script, start it "
                              "there first (torch.distributed.init_process_group()): each job then uses it and "
                              "leaves it up")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            _started_here = True
            _meeting = _meeting_group(device.type)
        except (ValueError, RuntimeError) as e:
            if "TORCHELASTIC_RUN_ID" not in os.environ:  # WORLD_SIZE set by hand, without torchrun's rendezvous
                raise MMEError(f"WORLD_SIZE={world} in the environment, but the process group did not start ({e}); "
                               f"launch ranks with torchrun, or unset WORLD_SIZE to run as one process") from e
            restart = env_int("TORCHELASTIC_RESTART_COUNT", 0)
            raise MMEError(f"the process group of {world} ranks did not start ({e})" + (
                f"; these are ranks torchrun restarted (restart {restart}), which can fail to connect where fresh "
                "ones do (gloo): launch torchrun afresh, with --resume auto to continue from the last checkpoint"
                if restart else "")) from e
    return DistInfo(get_rank(), local_rank, get_world_size())


def _meeting_group(device_type: str) -> dist.ProcessGroup | None:
    """The gloo group the ranks meet in (:data:`MEETING_WAIT`). Made under torch's timeout for a new gloo group (a
    rank that ended before joining it, made under :data:`MEETING_WAIT`, left the others waiting there for a year):
    a rank that does not join in that time is an MMEError on the others (not a ProcessLost: nothing is written yet).
    Beside NCCL, where gloo cannot connect (a cluster whose NCCL goes through an interface gloo does not pick: set
    GLOO_SOCKET_IFNAME), the ranks meet in the NCCL group, under its timeout, with a warning, rather than not
    starting."""
    try:
        group = dist.new_group(backend="gloo")
    except (ValueError, RuntimeError) as e:
        if isinstance(e, dist.DistStoreError):  # (its wait for a rank's address in the store ran out)
            raise MMEError(f"another rank did not join the ranks' gloo group within torch's timeout for a new "
                           f"gloo group (30 minutes by default) ({e}): it most likely ended once the process group "
                           "had started; torchrun's report on its node, or its own last line, says why; launch the "
                           "job again") from e
        if device_type != "cuda":  # gloo's own group did not start either: init_distributed says so
            raise
        log.warning("the ranks' gloo group did not start (%s; GLOO_SOCKET_IFNAME names the network interface it "
                    "uses): ranks whose work ends far apart (shares of mme embed, a test, a checkpoint) wait for each "
                    "other under NCCL's timeout", e)
        return None
    dist.distributed_c10d._set_pg_timeout(MEETING_WAIT, group)
    return group


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Only the main process writes logs and checkpoints."""
    return get_rank() == 0


@rank_lost_said()
def any_true(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is set on any rank (so every rank takes the same branch, e.g. skipping a step)."""
    if get_world_size() == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@rank_lost_said()
def max_over_ranks(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The element-wise maximum of integer tensor ``t`` over the ranks (``t`` itself in one process), on the CPU."""
    if get_world_size() == 1:
        return t
    out = t.to(device=device, dtype=torch.int32)  # NCCL and gloo reduce int32 alike
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out.cpu()


def check_start_step(resumed_step: int | None, resumed_run: str | None = None) -> None:
    """Raise on every rank unless all start at the same step of the same run: each resumes the checkpoint it reads on
    its own node (``resumed_step``, that checkpoint's; None: a fresh start; ``resumed_run``, the run_id it records).
    Checked before any branch on whether a rank resumes: a rank resuming meets the others in collectives that a rank
    starting fresh never joins (the run hung); ranks resuming one step of different runs (a node's copy of another
    run) trained different models on, DDP averaging their gradients."""
    starts = all_gather_objects((resumed_step, resumed_run))
    where = ("(each rank resumes what it finds on its own node: a multi-node run needs train.out_dir, and a "
             "train.resume path, on a shared file system)")
    if len({step for step, _ in starts}) > 1:
        said = _on_ranks([step for step, _ in starts],
                         lambda step: "a fresh start" if step is None else f"step {step} resumed")
        raise MMEError(f"ranks disagree on the step to start at: {said} {where}")
    if len(set(starts)) > 1:
        said = _on_ranks([run for _, run in starts], lambda run: "no run id recorded" if run is None else f"run {run}")
        raise MMEError(f"ranks resume checkpoints of different runs at step {starts[0][0]}: {said} {where}")


def check_same_inputs(inputs: dict[str, Callable[[], str] | None]) -> None:
    """Raise on every rank unless all read the same copy of each input: ``inputs`` maps what names an input that
    each rank reads on its own (a node, its own copy: ``task.test_list test.txt``, ``train.init model.pt``) to what
    says this rank's copy (``7 videos (digest ..)``, :func:`mme.data.dataset.list_identity`; ``weights ..``,
    :attr:`mme.models.checkpoint.Checkpoint.identity`), called under torchrun only; None: not read. Each input's
    copies are compared by its place in ``inputs`` (its name holds the node's own path) and named as this rank names
    it. Ranks that read other copies went on silently (their shares of a test, of ``mme embed``'s rows or of the
    training batches were of other videos or of another model, and rank 0 wrote them as its own), or a list of another
    length stopped the run at the first join of the failures, in gloo's abort."""
    if get_world_size() == 1:
        return
    with agreed():  # (an identity that cannot be read on one rank stops every rank)
        mine = [None if identity is None else identity() for identity in inputs.values()]
    held = all_gather_objects(mine)
    for k, what in enumerate(inputs):
        values = [rank_held[k] for rank_held in held]
        if len(set(values)) > 1:
            said = _on_ranks(values, lambda value: value or "none read")
            raise ConfigError(f"ranks disagree on {what}: {said}: every node must hold the same copy")


def code_compared() -> dict[str, object]:
    """What ranks compare of the code they run (:func:`check_same_settings`): mme's version, the versions of its
    rules that decide what a job computes (:func:`mme.rule_versions`: not the git commit, which an installed mme
    does not know and an edit of the docs changes) and torch's version without its build's label (``2.5.1`` of
    ``2.5.1+cu124``: a build for another CUDA or for the CPU alone is the same torch)."""
    from mme import __version__, rule_versions

    return {"mme": __version__, **{f"{rule} version": version for rule, version in rule_versions().items()},
            "torch": torch.__version__.split("+")[0]}


def check_same_settings(settings: dict[str, object], what: str, advice: str) -> None:
    """Raise on every rank unless all run one code (:func:`code_compared`) and hold the same ``settings``
    (``{name: value}``: a run's config, a command's options), ``what`` naming them and ``advice`` saying how to give
    every rank the same: each node runs its own install, reads its own config file and builds its own command line
    (an override made per node, ``train.seed=$RANDOM``), and ranks that disagree went on silently (models drifting
    apart, a features file of rows made two ways) or hung at a step one rank never reached. One line names each
    setting that differs, with its value on each rank: of the code where it differs (other code may resolve the
    same options to other settings), else of the settings."""
    if get_world_size() == 1:
        return
    held = all_gather_objects((code_compared(), settings))
    for part, said, then in ((0, "run other code", "every node must run one version of mme and torch"),
                             (1, f"disagree on {what}", advice)):
        values = [rank_held[part] for rank_held in held]
        reprs = {name: [repr(v.get(name)) for v in values] for name in sorted(set().union(*values))}
        differ = [name for name, on_ranks in reprs.items() if len(set(on_ranks)) > 1]
        if differ:
            listed = "; ".join(f"{name} " + _on_ranks(reprs[name], str) for name in differ)
            raise ConfigError(f"ranks {said}: {listed}: {then}")


def _on_ranks(values: list, name: Callable[[object], str]) -> str:
    """``values`` (one a rank, in rank order) said by value: ``<name(value)> on rank(s) <ranks>, ...``."""
    ranks: dict = {}
    for rank, value in enumerate(values):
        ranks.setdefault(value, []).append(str(rank))
    return ", ".join(f"{name(value)} on rank{'s' if len(held) > 1 else ''} {', '.join(held)}"
                     for value, held in ranks.items())


@rank_lost_said()
def mean_over_ranks(values: dict[str, torch.Tensor], device: torch.device) -> dict[str, float]:
    """Scalar float64 metric tensors (the training loop's sums, cast once as they are summed) averaged over ranks
    (for logging), as floats: one all-reduce and one copy to the host for all of them."""
    if not values:
        return {}
    t = torch.stack([v.to(device) for v in values.values()])
    if get_world_size() > 1:
        dist.all_reduce(t)
        t = t / get_world_size()
    return dict(zip(values, t.tolist()))


@rank_lost_said()
def all_gather_objects(obj):
    """Every rank's ``obj`` (picklable), as a list in rank order; ``[obj]`` without a process group. The ranks meet
    first (:func:`wait_for_ranks`): each may come from work of its own that took it longer (its share of a test)."""
    if get_world_size() == 1:
        return [obj]
    wait_for_ranks()
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


@rank_lost_said()
def broadcast_object(obj):
    """Rank 0's ``obj`` (picklable) on every rank; ``obj`` itself without a process group. The ranks meet first
    (:func:`wait_for_ranks`): rank 0 may come from work of its own (:func:`on_main`'s)."""
    if get_world_size() == 1:
        return obj
    wait_for_ranks()
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` run by rank 0 alone (a write, a check of the out folder), its result on every rank.
    An error it raises stops every rank: rank 0 raises it, the others an MMEError of the same kind (MMEError for
    another error, its type in the message) with rank 0's message. A rank left alone at the next collective died of
    gloo's lost connection (a one-line ProcessLost: :func:`rank_lost_said`), or waited for NCCL's timeout."""
    if get_world_size() == 1:
        return fn(*args, **kwargs)
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            error = e
    failed, result = broadcast_object((_said(error), result))
    if error is not None:
        raise alike(error)
    if failed is not None:
        raise _same_error(0, *failed)
    return result


def check_folder_shared(folder: Path, option: str) -> None:
    """Every rank sees the folder rank 0 locked (:func:`mme.utils.lock_folder`), told by the holder its ``.lock``
    records (PID, host, time), else every rank stops: on nodes that do not share it (a node-local disk, a relative
    path given from different folders) a rank's writes there went to its own node's folder, which rank 0 never read
    (``mme embed``'s rows, missing at every rerun), and a rank's reads found its own node's (a run's
    ``train.out_dir``, written by rank 0 alone: ``--resume auto`` found its checkpoints on rank 0's node only)."""
    if get_world_size() == 1:
        return
    try:
        seen = read_text(folder / FOLDER_LOCK)
    except OSError:  # (no such folder on this node)
        seen = None
    held = broadcast_object(seen)
    raise_together(None if seen is not None and seen == held else ConfigError(
        f"{option} must be a folder every node sees (a shared file system): {os.path.abspath(folder)} on the node "
        f"of rank {get_rank()} is not the one rank 0 holds"))


@contextlib.contextmanager
def agreed() -> Iterator[None]:
    """A block each rank runs on its own (its set-up's reads and checks: ``data.root``, the lists, ``train.init``;
    its share of a job's writes), ended together: an error of any rank stops every rank (:func:`raise_together`),
    where a rank that failed alone left the others to die at their next collective of gloo's lost connection, or
    wait for NCCL's timeout."""
    error = None
    try:
        yield
    except Exception as e:
        error = e
    raise_together(error)


def raise_together(error: Exception | None) -> None:
    """Raise on every rank when any rank has an ``error`` (a check each rank makes of its own share before any work,
    which torchrun would otherwise end by stopping the others mid-way): a rank its own, the others the same kind of
    error with the message of the first rank that has one."""
    said = all_gather_objects(_said(error))
    if error is not None:
        raise alike(error)
    for rank, failed in enumerate(said):
        if failed is not None:
            raise _same_error(rank, *failed)


def _said(error: Exception | None) -> tuple | None:
    """What another rank needs to raise ``error`` again (:func:`_same_error`); an error of another kind than MMEError
    is an MMEError there, naming its type."""
    if error is None:
        return None
    if isinstance(error, MMEError):
        return type(error), str(error), getattr(error, "exit_code", 1)
    return MMEError, f"{type(error).__name__}: {error}", 1


def _same_error(rank: int, kind: type, message: str, exit_code: int) -> MMEError:
    """Rank ``rank``'s error on another rank: its kind, its message after ``rank <rank>: ``, its exit code."""
    try:
        same = kind(f"rank {rank}: {message}")
    except TypeError:  # an error of other arguments (ClipNotDivisible's fields)
        same = MMEError(f"rank {rank}: {message}")
    same.exit_code = exit_code
    return alike(same)


def wait_for_ranks() -> None:
    """A barrier that Ctrl-C and SIGTERM still stop (a blocking one holds Python's signal handlers off until every
    rank is there), for ranks whose work ends far apart, up to :data:`MEETING_WAIT` (under the process group's
    timeout, a rank that came 30 minutes (gloo) or 10 (NCCL) after the first ended the run); a rank that ended
    meanwhile is an MMEError."""
    if get_world_size() == 1:
        return
    work = dist.barrier(group=_meeting, async_op=True)  # (None: a group started elsewhere, the default one)
    pause = 0.001  # ranks that come together meet in milliseconds (each checkpoint's on_main waited 0.2 s)
    while not work.is_completed():
        time.sleep(pause)
        pause = min(2 * pause, 0.2)
    with rank_lost_said():
        work.wait()


def alike(error: E) -> E:
    """``error``, marked as one every rank raises at the same point (:func:`on_main`'s, :func:`raise_together`'s):
    the ranks may still meet before they end (:func:`raised_alike`)."""
    error.on_every_rank = True
    return error


def raised_alike(error: BaseException) -> bool:
    """Whether every rank raised ``error`` at the same point (:func:`alike`), so that a collective after it is met by
    every rank; always in one process."""
    return get_world_size() == 1 or getattr(error, "on_every_rank", False)


def shutdown() -> None:
    global _meeting
    _meeting = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


ORDER_VERSION = 2
"""The rule of :func:`epoch_batches`' orders, recorded in every checkpoint's meta: a run resumed from a checkpoint of
another version takes other orders for its remaining epochs (version 1, torch's DistributedSampler seeded by seed +
epoch, gave seed s's epoch e the order of seed s+1's epoch e-1)."""


def epoch_batches(num_samples: int, batch_per_rank: int, seed: int, epoch: int, rank: int | None = None,
                  world_size: int | None = None) -> list[list[int]]:
    """This rank's batches of dataset indices for ``epoch``: a permutation drawn from :func:`sample_seed` of (seed,
    epoch), so that no two seeds share an epoch's order, dealt to the ranks as torch's DistributedSampler deals
    (the tail that leaves a rank short dropped, then round-robin), cut into full batches.

    With R ranks of batch b, the k-th batches of all ranks together hold the same samples as the k-th batch
    of one process with batch R*b, which is what makes DDP and single-process runs agree. Resuming mid-epoch
    drops the first batches of this list without decoding them."""
    world_size = get_world_size() if world_size is None else world_size
    rank = get_rank() if rank is None else rank
    generator = torch.Generator().manual_seed(sample_seed(seed, epoch, 0, "order"))
    dealt = num_samples // world_size * world_size
    order = torch.randperm(num_samples, generator=generator)[:dealt][rank::world_size].tolist()
    return [order[i:i + batch_per_rank] for i in range(0, len(order) - batch_per_rank + 1, batch_per_rank)]


def sample_seed(seed: int, epoch: int, index: int, stream: str) -> int:
    """A 63-bit seed for one sample in one epoch and one random ``stream`` ("data", "mask"), independent of
    rank, worker count and resume point."""
    digest = hashlib.blake2b(f"{stream}/{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)
