"""Training logs: after a resume from step 3 of a run killed at step 5, JSONL, CSV and TensorBoard all read as one
run (steps 1-5, the resumed values for 4-5)."""

import csv
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mme.train.metrics import build_logger


def test_every_log_reads_as_one_run_after_a_resume(tmp_path):
    first = build_logger(tmp_path)
    for step in range(1, 6):
        first.log({"loss": float(step)}, step)
    first.close()
    resumed = build_logger(tmp_path, resume_step=3)
    assert len(resumed.loggers) == 3  # JSONL, CSV and TensorBoard
    for step in (4, 5):
        resumed.log({"loss": 100.0 + step}, step)
    resumed.close()
    expected = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 104.0), (5, 105.0)]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == expected
    with open(tmp_path / "metrics.csv") as f:
        assert [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)] == expected
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == expected
