"""DDP: ``torchrun --nproc_per_node=2`` with batch b per rank trains the same model as one process with batch 2b
(CPU, gloo). The two ranks' k-th batches together hold the single process's k-th batch (one data order for any
world size), each sample's crop and mask are seeded by the sample, and DDP averages the gradients."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from training import FP32, TINY, run

STEPS = 3


def test_two_ranks_of_batch_b_equal_one_process_of_batch_2b(synth, tmp_path):
    single = run("tiny_cpu_pixel", synth, tmp_path / "single", f"train.steps={STEPS}", "train.batch_size=4", FP32)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mme.cli", "pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth, f"train.out_dir={out}",
           f"train.steps={STEPS}", "train.batch_size=2", FP32]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout and "effective batch 4 = 2/rank x 2 ranks x 1 accum" in proc.stdout
    a = torch.load(single.checkpoint, weights_only=True)
    b = torch.load(out / single.checkpoint.name, weights_only=True)
    assert b["meta"]["world_size"] == 2
    worst = max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])
    assert worst <= 1e-5, worst
    # rank 0 alone wrote one log whose losses are the mean over ranks = the single process's batch loss
    ddp_losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(ddp_losses) == STEPS
    for x, y in zip(ddp_losses, [r["loss"] for r in single.history]):
        assert abs(x - y) <= 1e-5 * max(1.0, abs(y))


def test_ranks_that_would_start_at_different_steps_stop_with_a_message(tmp_path):
    """What pre-training and fine-tuning check after a resume (each rank reads its own out dir)."""
    _two_ranks(tmp_path, (
        "import torch\n"
        "from mme.errors import MMEError\n"
        "from mme.train import distributed as dist\n"
        "dist.init_distributed('cpu')\n"
        "dist.check_start_step(7, torch.device('cpu'))  # the same on both ranks: passes\n"
        "try:\n"
        "    dist.check_start_step(3 + 2 * dist.get_rank(), torch.device('cpu'))\n"
        "except MMEError as e:\n"
        "    import sys\n"
        "    open(sys.argv[1] + f'/rank{dist.get_rank()}.txt', 'w').write(str(e))\n"
        "dist.shutdown()  # without it, gloo's teardown at exit sometimes aborts a rank (1 run in 7 measured)\n"))
    for rank in (0, 1):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert message.startswith("ranks disagree on the step to start at"), message
        assert message.endswith(f"from 3 to 5 (rank {rank} has {3 + 2 * rank})"), message


def test_every_rank_counts_and_skips_the_videos_any_rank_found_broken(tmp_path):
    """Each rank decodes its own share of the videos: the failures they found are joined at every log step, so
    rank 0's log and ``data.max_failure_fraction`` count them all (rank 0 counted its own only)."""
    (tmp_path / "list.txt").write_text("a.mp4\nb.mp4\nc.mp4\n")
    _two_ranks(tmp_path, (
        "import json, sys, types\n"
        "import torch\n"
        "from mme.config import from_dict\n"
        "from mme.data.dataset import DataConfig, PretrainDataset\n"
        "from mme.errors import DataError, VideoError\n"
        "from mme.train import distributed as dist\n"
        "from mme.train.loop import share_failures\n"
        "dist.init_distributed('cpu')\n"
        "rank = dist.get_rank()\n"
        "cfg = from_dict(DataConfig, {'list_file': sys.argv[1] + '/list.txt', 'max_failure_fraction': 0.7})\n"
        "data = PretrainDataset(cfg, track_length=2)\n"
        "err = VideoError(f'video {rank}: broken')\n"
        "err.reason = ['missing', 'decode error'][rank]\n"
        "data._record_failure(rank, err)\n"
        "run = types.SimpleNamespace(data=data, device=torch.device('cpu'))\n"
        "out = {'count': share_failures(run), 'reasons': data.failure_counts()}\n"
        "if rank == 1:  # a third of three, found by rank 1: over the fraction on every rank once joined\n"
        "    data.failure_codes[2] = 1\n"
        "try:\n"
        "    share_failures(run)\n"
        "except DataError as e:\n"
        "    out['stop'] = str(e).split(',')[0]\n"
        "open(sys.argv[1] + f'/rank{rank}.json', 'w').write(json.dumps(out))\n"
        "dist.shutdown()\n"))
    for rank in (0, 1):
        out = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert out["count"] == 2 and out["reasons"] == {"missing": 1, "decode error": 1}, out
        assert out["stop"].startswith("3 of 3 videos in"), out


def _two_ranks(tmp_path, script: str) -> None:
    """Run ``script`` on two torchrun ranks with ``tmp_path`` as its argument; each rank writes its own file
    there (printed to the shared stdout, the ranks' messages can interleave)."""
    (tmp_path / "ranks.py").write_text(script)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(tmp_path / "ranks.py"), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_checkpoint_rank_0_cannot_write_stops_every_rank_with_its_message(synth, tmp_path):
    """Rank 0 failed its checkpoint write with one line; rank 1 died at the next collective of gloo's lost
    connection (a traceback), and under NCCL it would have waited for its timeout."""
    script = ("import resource, signal, sys; from mme import cli; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000)); sys.exit(cli.main(sys.argv[1:]))")
    (tmp_path / "limited.py").write_text(script)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(tmp_path / "limited.py"), "pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth,
           f"train.out_dir={tmp_path / 'run'}", "train.steps=2", "train.batch_size=2", FP32]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("mme pretrain: error:")]
    assert len(errors) == 2 and "could not write the checkpoint of step 2" in errors[0], proc.stderr[-3000:]
    assert any(ln.startswith("mme pretrain: error: rank 0: ") for ln in errors), errors
    assert "Connection closed by peer" not in proc.stderr
