"""Vectorised groups: runs that differ only in numbers, trained as one vmapped program, give the
same results as trained one by one."""

import pytest

from bnlab.config.load import load, to_object
from bnlab.runner.execute import execute, vector_groups
from bnlab.runner.plan import plan
from bnlab.runner.results import RunDir
from bnlab.train.structure import structure_key

SWEEP = [
    "model.width=16",
    "model.depth=2",
    "train.steps=60",
    "train.log_every=20",
    "train.batch_size=32",
    "optim.name=momentum",
    "sweep.grid.seed=[0,1]",
    "sweep.zip.optim.lr=[0.05,0.2]",
    "sweep.zip.model.init_scale=[1.0,2.0]",
    "sweep.zip.optim.global_clipnorm=[1.0,5.0]",
    "sweep.zip.optim.weight_decay=[1e-4,1e-3]",
    "sweep.zip.model.bn_momentum=[0.9,0.99]",
    "sweep.zip.model.norm_epsilon=[1e-5,1e-3]",
    "sweep.zip.model.dropout=[0.1,0.3]",
]


def results(p):
    return {s.run_id: RunDir(p.out_dir / "runs" / s.run_id).metrics() for s in p.runs}


@pytest.mark.parametrize("norm", ["noisy_batch"])  # BN, plus per-run noise keys under vmap
def test_vmapped_group_matches_one_by_one(tmp_path, norm):
    seq = plan(None, SWEEP + [f"model.norm={norm}"], tmp_path / "seq")
    assert execute(seq, vectorize=False) == {"done": 4}
    vec = plan(None, SWEEP + [f"model.norm={norm}"], tmp_path / "vec")
    assert len(vector_groups(vec, vec.runs)) == 1  # all four runs share one program
    assert execute(vec, vectorize=True) == {"done": 4}
    a, b = results(seq), results(vec)
    for rid in a:
        assert [r["step"] for r in a[rid]] == [r["step"] for r in b[rid]]
        for ra, rb in zip(a[rid], b[rid]):
            for key in ("train_loss", "test_loss", "val_acc", "grad_norm", "param_norm/head.kernel", "lr"):
                if key in ra:
                    assert rb[key] == pytest.approx(ra[key], rel=2e-5, abs=1e-7), (rid, ra["step"], key)


def test_structure_splits_groups(tmp_path):
    p = plan(
        None,
        ["train.steps=5", "sweep.grid.model.norm=[none,batch]", "sweep.grid.seed=[0,1]", "sweep.grid.optim.clipvalue=[null,1.0]"],
        tmp_path / "o",
    )
    groups = vector_groups(p, p.runs)
    assert sorted(len(g) for g in groups) == [2, 2, 2, 2]  # norm and clipping on/off are structure; seeds group
    a, b = (to_object(load(None, [f"optim.weight_decay={wd}"])) for wd in (0.0, 0.1))
    assert structure_key(a) != structure_key(b)  # weight decay on/off changes the program


def test_vectorised_divergence_is_per_run(tmp_path):
    p = plan(
        None,
        [
            "model.width=16",
            "model.depth=2",
            "train.steps=40",
            "train.log_every=20",
            "train.batch_size=32",
            "model.norm=none",
            "model.init_scale=30",
            "model.activation=relu",
            "sweep.grid.optim.lr=[1e6,0.01]",
        ],
        tmp_path / "o",
    )
    assert execute(p, vectorize=True) == {"diverged": 1, "done": 1}
    assert RunDir(p.out_dir / "runs" / "lr-0.01").metrics()[-1]["step"] == 40


def test_auto_follows_the_measured_rule():
    """--vectorize auto on a CPU: worker processes beat every measured vmapped gain (at most 1.27x
    against ~1.9x for two workers); a single worker vmaps the structures whose group gained (the
    CNN, the LSTM), not the MLPs (0.97x), nor a structure never measured."""
    from bnlab.runner.vectorize_rule import VMAP_GAIN, vmap_pays

    assert not any(vmap_pays(m, 2, accelerator=False) for m in VMAP_GAIN)
    assert [m for m in VMAP_GAIN if vmap_pays(m, 1, accelerator=False)] == ["cnn", "lstm"]
    assert vmap_pays("mlp", 1, accelerator=True) and not vmap_pays("unmeasured", 1, accelerator=False)


def test_auto_with_one_worker_vmaps_only_the_structures_that_gain(tmp_path, monkeypatch):
    import bnlab.runner.execute as ex

    sizes = []
    real = ex.run_group
    monkeypatch.setattr(ex, "run_group", lambda cfgs, *a, **k: sizes.append((cfgs[0].model.name, len(cfgs))) or real(cfgs, *a, **k))
    tiny = ["train.steps=4", "train.log_every=2", "model.width=4", "data.name=digits", "sweep.grid.seed=[0,1,2]"]
    for name, depth in (("cnn", 1), ("mlp", 2)):
        p = plan(None, tiny + [f"model.name={name}", f"model.depth={depth}"], tmp_path / name)
        assert execute(p, workers=1, vectorize=None) == {"done": 3}
    assert sizes == [("cnn", 3), ("mlp", 1), ("mlp", 1), ("mlp", 1)]
    p = plan(None, tiny + ["model.name=cnn", "model.depth=1"], tmp_path / "two_workers")
    assert ex.auto_vectorize(p, p.runs, workers=2) == (False, 2)  # workers beat the CNN's measured gain
