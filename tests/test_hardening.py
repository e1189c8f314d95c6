"""Defects found by a new user's walk and a fault tester (issue: hardening), each with its reproduction."""

import errno
import os
import signal
import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT, bnlab_cmd, run_plan, seed_sweep

from bnlab.cli import main
from bnlab.runner.results import RunDir, read_summary

TINY = ["model.width=16", "model.depth=2", "train.steps=40", "train.log_every=20", "train.batch_size=32"]


def untimed(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "steps_per_sec")} for r in rows]


def sh(*args, env=None):
    return subprocess.run(bnlab_cmd(*args), capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def test_default_install_leaves_tensorflow_to_the_tfds_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    default = " ".join(project["dependencies"]).lower()
    assert "tensorflow" not in default and "ray" not in default
    assert any(d.startswith("tensorflow-datasets") for d in project["optional-dependencies"]["tfds"])


def test_a_torn_metrics_file_of_a_finished_run_is_detected_and_the_run_redone(tmp_path, capsys):
    out = tmp_path / "o"
    assert run_plan(TINY, out)[0] == {"done": 1}
    rd = RunDir(out / "runs" / "run")
    whole = rd.metrics_path.read_bytes()
    before = untimed(rd.metrics())
    rd.metrics_path.write_bytes(whole[: len(whole) - 40])  # cut the tail: the last row is torn
    assert rd.status()["status"] == "unknown" and str(rd.metrics_path) in rd.status()["problem"]
    assert main(["run", "/dev/null", *TINY, "--out", str(out), "--quiet"]) == 0
    assert "metrics.jsonl: changed after the run finished" in capsys.readouterr().err
    assert rd.status()["status"] == "done" and untimed(rd.metrics()) == before  # redone, to the same numbers
    assert read_summary(out)[0]["step"] == "40"


def test_garbage_in_a_status_file_names_it_and_the_run_is_redone(tmp_path, capsys):
    out = tmp_path / "o"
    run_plan(TINY + ["sweep.grid.seed=[0,1]"], out)
    (out / "runs" / "seed-1" / "status.json").write_text("{not json")
    assert main(["plot", str(out)]) == 0  # plotting still works, and says which file is bad
    assert "seed-1/status.json: unreadable" in capsys.readouterr().err
    assert main(["run", "/dev/null", *TINY, "sweep.grid.seed=[0,1]", "--out", str(out), "--quiet"]) == 0
    assert "seed-1/status.json: unreadable" in capsys.readouterr().err
    assert [r["status"] for r in read_summary(out)] == ["done", "done"]


def test_a_folder_belongs_to_one_config_sweep_included(tmp_path, capsys):
    out = tmp_path / "m"
    first = [*TINY, "sweep.grid.model.norm=[none,batch]", "sweep.grid.seed=[0]"]
    assert main(["run", "/dev/null", *first, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    code = main(
        [
            "run",
            "/dev/null",
            *TINY,
            "sweep.grid.seed=[0]",
            "sweep.grid.model.norm=[group]",
            "optim.lr=0.3",
            "model.width=32",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "different config" in err and "optim.lr" in err and "model.width" in err and "sweep.grid.model.norm" in err
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["norm-batch_seed-0", "norm-none_seed-0"]
    assert main(["run", "/dev/null", *first, "--out", str(out), "--quiet"]) == 0  # the same config again: nothing to do, accepted


def test_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["run", "/dev/null", *TINY, "--out", str(tmp_path / "f")]) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "f").read_text() == "x"


def test_a_busy_folder_is_refused_before_anything_is_loaded(tmp_path, capsys, monkeypatch):
    import fcntl

    from bnlab.data import dataset

    monkeypatch.setattr(dataset, "load", lambda cfg: pytest.fail("loaded the data of a run that cannot start"))
    out = tmp_path / "o"
    out.mkdir()
    with open(out / "sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main(["run", "/dev/null", *TINY, "--out", str(out)]) == 2
    assert "another `bnlab run`" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_ends_in_one_line_and_a_rerun_resumes(tmp_path, workers):
    cfg = seed_sweep(tmp_path, seeds=3, steps=300)
    out = tmp_path / "out"
    env = {**os.environ, "BNLAB_DIE_AT": "seed-1:100:INT"}  # Ctrl-C to the process group, as a terminal sends it
    # SIGINT back to its default in the child: a shell without job control starts background commands
    # (e.g. `bash .ci/run &`) with SIGINT ignored, and the child would inherit that
    proc = subprocess.run(bnlab_cmd("run", str(cfg), "--out", str(out), "--quiet", "--workers", workers), cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env, start_new_session=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("bnlab: interrupted")
    assert "rerun the same command" in proc.stderr
    statuses = {rid: RunDir(out / "runs" / rid).status()["status"] for rid in ("seed-0", "seed-1", "seed-2")}
    assert set(statuses.values()) <= {"done", "interrupted", "pending"}  # nothing left running, nothing failed
    if workers == "1":  # in-process the interrupt lands in seed-1 itself (workers may finish their run first)
        assert statuses == {"seed-0": "done", "seed-1": "interrupted", "seed-2": "pending"}
    assert not list(out.glob("**/.*.tmp-*"))
    r = sh("run", str(cfg), "--out", str(out), "--quiet", "--workers", workers)
    assert r.returncode == 0, r.stderr
    assert [row["status"] for row in read_summary(out)] == ["done"] * 3


def test_a_full_disk_ends_in_one_line_and_leaves_no_temporary_files(tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real_fsync = os.fsync

    def full_after_a_while(fd):
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_after_a_while)
    out = tmp_path / "o"
    assert main(["run", "/dev/null", *TINY, "sweep.grid.seed=[0,1]", "--out", str(out), "--quiet", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no space left" in err and "rerun the same command" in err, err
    assert not list(out.glob("**/.*.tmp-*"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(["run", "/dev/null", *TINY, "sweep.grid.seed=[0,1]", "--out", str(out), "--quiet", "--workers", "1"]) == 0
    assert [row["status"] for row in read_summary(out)] == ["done", "done"]


def test_a_diverged_run_keeps_its_times(tmp_path):
    counts, out = run_plan(TINY + ["model.norm=none", "model.init_scale=30", "model.activation=relu", "optim.lr=1e6"], tmp_path / "o")
    status = RunDir(out / "runs" / "run").status()
    assert counts == {"diverged": 1} and status["wall_time"] > 0 and status["compile_time"] >= 0


def test_epochs_with_full_batch_count_full_batches():
    from bnlab.config.schema import Config
    from bnlab.train.state import total_steps

    cfg = Config()
    cfg.train.steps, cfg.train.epochs, cfg.train.full_batch = None, 10, True
    assert total_steps(cfg, 700) == 10


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["model.norm=ghost_batch", "model.ghost_batch_size=7", "train.full_batch=true"], ["model.ghost_batch_size", "full_batch", "divisor"]),
        (["data.name=linear_regression", "model.name=dln"], ["model.activation", "linear"]),
    ],
)
def test_config_semantics_are_checked_before_running(tmp_path, capsys, overrides, words):
    assert main(["run", "/dev/null", *TINY, *overrides, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not (tmp_path / "o").exists()


def test_landscape_step_sizes_follow_the_scheduled_lr():
    import jax
    import optax

    from bnlab.config.schema import Config
    from bnlab.data.dataset import load
    from bnlab.measure.diagnostics import Landscape
    from bnlab.train.program import TrainProgram

    cfg = Config()
    cfg.model.width, cfg.model.depth = 12, 2
    cfg.optim.lr, cfg.optim.schedule, cfg.train.steps = 0.4, "cosine", 20
    cfg.diagnostics.landscape.eta_multipliers = [1.0]
    t = TrainProgram(cfg, load(cfg.data))
    state, _ = t.train_chunk(t.init(0), 10)
    out = Landscape(cfg, t).measure(state)
    lr = 0.4 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 10 / 20))  # cosine at step 10 of 20
    assert out["landscape/lr"] == pytest.approx(lr, rel=1e-5)
    x, y = t.batch_at(state)
    f = lambda p: t.model.loss(p, state.batch_stats, x, y)[0]
    g = jax.grad(f)(state.params)
    moved = jax.tree.map(lambda w, d: w - lr * d, state.params, g)
    assert out["landscape/loss_max"] == pytest.approx(float(f(moved)), rel=1e-4)
    assert out["landscape/beta_smoothness"] == pytest.approx(
        float(optax.global_norm(jax.tree.map(lambda a, b: a - b, g, jax.grad(f)(moved)))) / (lr * float(optax.global_norm(g))), rel=1e-3
    )


def test_a_worker_is_pinned_to_one_core_with_real_xla_flags():
    code = (
        "import os, bnlab.runner.workers as w; w._pin_to_one_core(1); "
        "print(len(os.sched_getaffinity(0)), all(f.startswith('--') for f in os.environ['XLA_FLAGS'].split()))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "XLA_FLAGS": ""})
    assert r.stdout.split() == ["1", "True"], r.stderr


@pytest.mark.slow
def test_a_run_ends_with_a_table_of_final_metrics_and_counts_steps(tmp_path):
    r = sh("run", "/dev/null", *TINY, "sweep.grid.model.norm=[none,batch]", "sweep.grid.seed=[0,1]", "--out", str(tmp_path / "o"), "--workers", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].endswith("4 done")
    assert lines[1].split() == ["norm", "runs", "diverged", "final", "test_acc", "final", "train_loss"]
    assert [line.split()[:3] for line in lines[2:]] == [["none", "2", "0"], ["batch", "2", "0"]]
    assert "/160 " in r.stderr and "4/4 runs finished" in r.stderr  # one bar in steps: 4 runs x 40 steps


def test_definitions_follow_the_papers_defaults():
    """Ioffe & Szegedy's Fig. 1 measures the training-mode network; Santurkar's DLN probes span [1/100, 30] x lr."""
    from bnlab.config.schema import Config

    assert Config().diagnostics.activations.bn_mode == "batch"


def test_a_dln_landscape_must_use_santurkars_step_range(tmp_path, capsys):
    dln = ["data.name=linear_regression", "data.standardize=none", "model.name=dln", "model.activation=linear", "diagnostics.landscape.enabled=true"]
    assert main(["run", "/dev/null", *TINY, *dln, "--out", str(tmp_path / "o")]) == 2
    assert "1/100 to 30" in capsys.readouterr().err
    ok = dln + ["diagnostics.landscape.eta_multipliers=[0.01,0.1,1,10,30]", "train.steps=5", "train.log_every=5"]
    assert main(["run", "/dev/null", *TINY, *ok, "--out", str(tmp_path / "p"), "--quiet"]) == 0


def test_a_folder_recorded_before_a_new_config_key_existed_is_still_the_same_sweep(tmp_path):
    """sweep.yaml written by an older bnlab lacks keys added since (at their defaults then): a rerun
    of the same config finds the folder done instead of calling it another config."""
    import yaml

    out = tmp_path / "o"
    assert main(["run", "/dev/null", *TINY, "--out", str(out), "--quiet", "--workers", "1"]) == 0
    recorded = yaml.safe_load((out / "sweep.yaml").read_text())
    del recorded["train"]["eval_train"], recorded["data"]["mnist1d_samples"]
    (out / "sweep.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    assert main(["run", "/dev/null", *TINY, "--out", str(out), "--quiet", "--workers", "1"]) == 0
    assert main(["run", "/dev/null", *TINY, "train.eval_train=true", "--out", str(out), "--quiet", "--workers", "1"]) == 2
