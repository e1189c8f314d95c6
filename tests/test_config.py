"""Config validation, overrides and sweep expansion."""

import textwrap

import pytest

from bnlab.cli import main
from bnlab.config.load import load, to_object
from bnlab.config.schema import Config
from bnlab.config.sweep import expand, run_id
from bnlab.errors import ConfigError
from bnlab.runner.validate import validate

GOOD = textwrap.dedent(
    """
    name: t
    model: {width: 8, depth: 1}
    train: {steps: 5, log_every: 5, batch_size: 16}
    """
)

# (overrides, words the message must contain)
BAD = [
    (["optim.lr=-0.1"], ["optim.lr", "> 0"]),
    (["optim.lr=0"], ["optim.lr"]),
    (["optim.lr=fast"], ["optim.lr"]),
    (["model.norm=batchy"], ["model.norm", "batchy", "allowed: batch, batch_renorm, ghost_batch, group, layer"]),
    (["model.activation=swishy"], ["model.activation", "sigmoid"]),
    (["model.init=zeros"], ["model.init", "he_normal"]),
    (["model.name=resnet"], ["model.name", "cnn, dln, lstm, mlp, rnn"]),
    (["optim.name=lbfgs"], ["optim.name", "adam"]),
    (["model.colour=red"], ["model.colour", "unknown key"]),
    (["modle.width=3"], ["modle: unknown key", "did you mean model?"]),
    (["model.width=0"], ["model.width", ">= 1"]),
    (["model.width=wide"], ["model.width"]),
    (["model.dropout=1.5"], ["model.dropout"]),
    (["model.bn_momentum=1.0"], ["model.bn_momentum"]),
    (["model.norm=group", "model.groups=3"], ["model.groups", "divide"]),
    (["train.batch_size=100000"], ["train.batch_size", "larger than the training split"]),
    (["train.batch_size=0"], ["train.batch_size"]),
    (["train.epochs=2"], ["train.steps, train.epochs", "exactly one"]),
    (["train.steps=null"], ["exactly one"]),
    (["train.checkpoint_every=7"], ["train.checkpoint_every", "multiple"]),
    (["data.name=imagenet"], ["data.name", "digits"]),
    (["data.name=idx:/no/such/folder"], ["data.name", "does not exist"]),
    (["data.name=idx"], ["data.name", "argument"]),
    (["data.subset=100000"], ["data.subset", "larger"]),
    (["data.standardize=minmax"], ["data.standardize", "channel"]),
    (["data.val_fraction=1.5"], ["data.val_fraction"]),
    (["optim.schedule=cyclic"], ["optim.schedule", "cosine"]),
    (["optim.global_clipnorm=-1"], ["optim.global_clipnorm"]),
    (["optim.clipnorm=1", "optim.global_clipnorm=1"], ["at most one"]),
    (["optim.decay_boundaries=[0.8,0.2]"], ["optim.decay_boundaries"]),
    (["sweep.grid.model.norm=[batch,bogus]"], ["model.norm", "bogus"]),
    (["sweep.grid.model.nope=[1,2]"], ["model.nope", "unknown key"]),
    (["sweep.grid.seed=3"], ["sweep.grid.seed", "list"]),
    (["sweep.zip.optim.lr=[0.1,1]", "sweep.zip.seed=[1,2,3]"], ["same length"]),
    (["sweep.grid.seed=[1,1]"], ["same id"]),
    (["optim.lr"], ["section.key=value"]),
    (["optim.lr=inf"], ["optim.lr", "finite"]),
    (["model.init_scale=nan"], ["model.init_scale", "finite"]),
    (["optim.decay_boundaries=[0.5,.inf]"], ["optim.decay_boundaries", "finite"]),
    (["model.widht=3"], ["model.widht", "did you mean model.width?", "allowed keys here", "depth"]),
    (["trian.steps=3"], ["trian: unknown key", "did you mean train?", "allowed keys here"]),
    (["diagnostics.activations.point=output"], ["diagnostics.activations.point", "allowed: nonlinearity_input, pre_norm"]),
    (
        ["model.name=lstm", "diagnostics.activations.enabled=true", "diagnostics.activations.point=pre_norm"],
        ["diagnostics.activations.point", "feedforward models, not 'lstm'"],
    ),
    (["train.eval_bn_stats=median"], ["train.eval_bn_stats", "allowed: running, population, population_biased, both, all"]),
]


@pytest.mark.parametrize("overrides,words", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_config_exits_2_names_key_writes_nothing(tmp_path, capsys, overrides, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD)
    out = tmp_path / "out"
    code = main(["run", str(cfg), *overrides, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()


@pytest.mark.parametrize(
    "text,words",
    [
        ("model: {widht: 3}", ["model.widht", "unknown key", "width"]),
        ("model: {width: [1, 2]}", ["model.width"]),
        ("optimizer: {lr: 1}", ["optimizer", "unknown key"]),
        ("model: [1, 2", ["c.yaml"]),
        ("- 1\n- 2", ["mapping"]),
    ],
)
def test_bad_yaml_files(tmp_path, capsys, text, words):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, (w, err)


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_overrides_are_typed_and_applied(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD)
    c = to_object(load(cfg, ["optim.lr=0.25", "model.norm=layer", "optim.clipvalue=2"]))
    assert c.optim.lr == 0.25 and isinstance(c.optim.lr, float)
    assert c.model.norm == "layer" and c.optim.clipvalue == 2.0
    assert c.model.width == 8  # from the file


def test_defaults_follow_design():
    c = Config()
    assert c.model.bn_momentum == 0.99 and c.model.norm_epsilon == 1e-5
    assert c.data.name == "digits"


def test_grid_and_zip_expansion_and_ids(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        GOOD
        + textwrap.dedent(
            """
            sweep:
              grid: {model.norm: [none, batch], seed: [0, 1, 2]}
              zip: {optim.lr: [0.1, 1.0], train.batch_size: [16, 32]}
            """
        )
    )
    runs = expand(load(cfg))
    assert len(runs) == 2 * 3 * 2
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "norm-none_seed-0_lr-0.1_batch_size-16"
    pairs = {(r.config.optim.lr, r.config.train.batch_size) for r in runs}
    assert pairs == {(0.1, 16), (1.0, 32)}  # zipped, not crossed
    r = runs[-1]
    assert (r.config.model.norm, r.config.seed) == ("batch", 2)
    assert r.config.sweep.grid == {} and r.config.sweep.zip == {}  # a run's config is the run alone
    # ids are stable: an unrelated change keeps them
    again = expand(load(cfg, ["model.width=12"]))
    assert [x.run_id for x in again] == ids


def test_no_sweep_is_one_run(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD)
    (run,) = expand(load(cfg))
    assert run.run_id == "run" and run.varying == {}


def test_colliding_short_names_use_full_keys():
    assert run_id({"model.dropout": 0.1, "optim.dropout": 0.2}) == "model.dropout-0.1_optim.dropout-0.2"


def test_validate_lists_every_problem():
    c = Config()
    c.optim.lr = -1
    c.model.width = 0
    c.train.steps = 10
    with pytest.raises(ConfigError) as err:
        validate(c)
    assert "optim.lr" in str(err.value) and "model.width" in str(err.value)


def test_overriding_a_swept_key_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD + "sweep: {grid: {model.norm: [none, batch]}}\n")
    assert main(["run", str(cfg), "model.norm=layer", "--out", str(tmp_path / "o")]) == 2
    assert "sweep.grid.model.norm" in capsys.readouterr().err
    runs = expand(load(cfg, ["sweep.grid.model.norm=[layer]"]))
    assert [r.run_id for r in runs] == ["norm-layer"]
