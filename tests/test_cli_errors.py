"""Bad input: one clear paragraph naming the problem, exit code 2, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from distmeta.cli import main
from tests.cluster import record_cluster
from tests.conftest import REPO, SINE_CONFIG, free_port

QUICK = [
    "trainer.max_steps=2",
    "cluster.num_shards=0",
    "evaluation.num_tasks=4",
    "trainer.progress_bar=false",
    "algorithm.compile=false",
]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", str(SINE_CONFIG), "trainer.max_step=3"], "did you mean 'trainer.max_steps'?"),
        (["train", str(SINE_CONFIG), "algorithm.meta_lr=fast"], "'algorithm.meta_lr' has the wrong type"),
        (["train", "configs/missing.yaml"], "config file not found: configs/missing.yaml"),
        (["train", str(SINE_CONFIG), "algorithm.inner_lr=-1"], "'algorithm.inner_lr': must be positive"),
        (["train", str(SINE_CONFIG), "algorithm.inner_steps=0"], "maml needs at least one inner step"),
        (["train", str(SINE_CONFIG), "cluster.num_shards=30"], "cannot be split over cluster.num_shards=30"),
        (["train", str(SINE_CONFIG), "trainer.max_steps=-5"], "'trainer.max_steps': must be positive"),
        (["train", str(SINE_CONFIG), "--resume", "last"], "no last.ckpt under checkpoint.dir"),
        (["eval", "--checkpoint", "nothing.ckpt"], "checkpoint not found: nothing.ckpt"),
        (["train", str(REPO / "configs/omniglot_5w1s_maml.yaml")], "set tasks.root to its folder"),
        (
            ["train", str(REPO / "configs/omniglot_5w1s_maml.yaml"), "tasks.root=no/such/dir", *QUICK],
            "Omniglot not found under 'no/such/dir' (no images_background, images_evaluation); expected layout:",
        ),
        (
            ["train", str(REPO / "configs/miniimagenet_5w1s_maml.yaml"), "tasks.root=no/such/dir", *QUICK],
            "mini-ImageNet not found under 'no/such/dir' (no test.csv, images/)",
        ),
        (["train", str(SINE_CONFIG), "algorithm.name=protonet"], "protonet classifies; use an image family"),
        (
            ["train", str(SINE_CONFIG), "algorithm.name=reptil"],
            "'reptil' is not one of maml, fomaml, reptile, anil, metasgd, protonet",
        ),
        (["train", str(SINE_CONFIG), "tasks.shard_by=classes"], "'classes' partitions image classes; tasks.family=sine has none"),
        (["train", str(SINE_CONFIG), "cluster.address=head:port"], "cluster.address=head:port is not of the form host:port"),
        (["train", str(SINE_CONFIG), "checkpoint.dir=/proc/distmeta", *QUICK], "checkpoint.dir=/proc/distmeta cannot be created"),
        (["train", str(SINE_CONFIG), f"checkpoint.dir={SINE_CONFIG}", *QUICK], "sine_maml.yaml is a file, not a folder"),
        (
            ["train", str(SINE_CONFIG), "tracking.uri=bogus://x", *QUICK],
            "tracking.uri=bogus://x cannot be used as an MLflow store",
        ),
        (["train", str(SINE_CONFIG), "tracking.uri=mlruns", *QUICK], "mlruns is a folder, MLflow's file store, which MLflow"),
        (["train", str(SINE_CONFIG), "tracking.uri=file:///tmp/mlruns", *QUICK], "is a folder, MLflow's file store"),
        (
            ["train", str(SINE_CONFIG), "tracking.uri=postgresql://u@127.0.0.1:1/db", *QUICK],
            "tracking.uri=postgresql://u@127.0.0.1:1/db needs a database driver that is not installed",
        ),
        (["train", str(SINE_CONFIG), "algorithm=3", "algorithm.name=maml"], "'algorithm=3': algorithm is a section"),
        (["train", str(SINE_CONFIG), "trainer.grad_clip=nan"], "'trainer.grad_clip': must be a finite number, got nan"),
        (["train", str(SINE_CONFIG), "trainer.grad_clip=inf"], "'trainer.grad_clip': must be a finite number, got inf"),
        (["train", str(SINE_CONFIG), "algorithm.inner_lr=inf"], "'algorithm.inner_lr': must be a finite number"),
        (["train", str(SINE_CONFIG), "algorithm.meta_lr=1e300"], "1e+300 is past any useful learning rate (at most 1.0)"),
        (
            ["train", str(SINE_CONFIG), "tasks.families=[{name: sine, ranges: {amplitude: [0, .inf]}}]"],
            "'tasks.families[0].ranges.amplitude[1]': must be a finite number, got inf",
        ),
        (["train", str(SINE_CONFIG), "cluster.step_timeout_s=0.01"], "0.01 s is shorter than any step takes"),
        (
            ["train", str(REPO / "configs/glyphs_5w1s_maml.yaml"), "tasks.image_size=8"],
            "'tasks.image_size': 8 is too small",
        ),
        (["eval", "--checkpoint", "."], ". is a folder without a last.ckpt"),
        (
            [
                "train",
                str(REPO / "configs/glyphs_5w1s_maml.yaml"),
                "tasks.shard_by=classes",
                "tasks.class_partitions=400",
                *QUICK,
            ],
            "glyphs (class partition 0 of the training split): ways=5 is more than its",
        ),
        (
            ["train", str(REPO / "configs/glyphs_5w1s_maml.yaml"), "tasks.ways=300", *QUICK],
            "glyphs (test split, evaluation.shots=1, evaluation.query=15): ways=300 is more than its 264 classes",
        ),
        (
            ["train", str(REPO / "configs/glyphs_5w1s_maml.yaml"), "tasks.shots=10", "tasks.query=15", *QUICK],
            "shots + query = 25 exceeds the 20 images per class",
        ),
        (["train", str(REPO / "configs/glyphs_5w1s_maml.yaml"), "model.name=resnet"], "'resnet' is not one of mlp, conv4"),
        (
            [
                "train",
                str(SINE_CONFIG),
                "tasks.families=[{name: sine, label: train}, {name: linear}]",
                "model.heads=per_family",
                *QUICK,
            ],
            "tasks.families label 'train' is a name torch's nn.ModuleDict uses itself",
        ),
        *(
            [
                (
                    ["train", str(SINE_CONFIG), "cluster.learner_device=cuda", *QUICK],
                    "cluster.learner_device=cuda but this process sees no CUDA device",
                )
            ]
            if not torch.cuda.is_available()
            else []
        ),
    ],
)
def test_bad_input_exits_2_with_named_problem(argv, expected, workdir, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in " ".join(err.split())
    assert "Traceback" not in err


def test_unreachable_cluster_address(workdir, capsys):
    port = free_port()  # nothing listens there
    assert main(["train", str(SINE_CONFIG), f"cluster.address=127.0.0.1:{port}", *QUICK[:1]]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cluster.address=127.0.0.1:{port} is unreachable" in err


def test_auto_cluster_address_with_no_cluster_started_here(workdir, capsys, monkeypatch):
    """``auto`` means the cluster ``ray start`` recorded (or RAY_ADDRESS), never some Ray process
    that happens to run on the machine: none recorded is an error, a stale record unreachable."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(workdir))  # a Ray temp dir of this test's own, with no record yet
    assert main(["train", str(SINE_CONFIG), "cluster.address=auto", *QUICK[:1]]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "cluster.address=auto found no cluster: RAY_ADDRESS is not set" in err and "Traceback" not in err

    port = free_port()  # a cluster that was stopped without clearing its record
    record_cluster(workdir, f"127.0.0.1:{port}")
    assert main(["train", str(SINE_CONFIG), "cluster.address=auto", *QUICK[:1]]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cluster.address=auto (127.0.0.1:{port}) is unreachable" in err


def test_unreachable_tracking_uri(workdir, capsys):
    port = free_port()
    assert main(["train", str(SINE_CONFIG), f"tracking.uri=http://127.0.0.1:{port}", *QUICK]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"tracking.uri=http://127.0.0.1:{port} is not reachable" in err


def test_truncated_checkpoint_is_refused_and_left_alone(workdir, capsys):
    bad = workdir / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert bad.read_bytes() == b"PK\x03\x04 truncated"


def test_real_process_exit_code_and_no_traceback(workdir):
    proc = subprocess.run(
        [sys.executable, "-m", "distmeta.cli", "train", str(SINE_CONFIG), "model.hiden=[4]"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown config key 'model.hiden'; did you mean 'model.hidden'?" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.ray
def test_impossible_resources_fail_fast_before_any_run_exists(workdir, ray_runtime, capsys):
    from mlflow.tracking import MlflowClient

    argv = ["train", str(SINE_CONFIG), "cluster.cpus_per_shard=3", *QUICK[:1], "algorithm.compile=false"]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "cluster.num_shards=2 shards of {3 CPU} each (placement PACK) need 6 CPU; the cluster has 2 CPU in all" in err
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert client.get_experiment_by_name("sine_maml") is None, "refused before any run was made"


class _Hostile:
    def __reduce__(self):  # what a hostile checkpoint carries: code to run on loading
        return (os.system, ("echo pwned",))


@pytest.fixture(autouse=True)
def nothing_half_done(workdir):
    """After every case here: no MLflow run left RUNNING, no empty run folder."""
    yield
    from mlflow.tracking import MlflowClient

    for db in workdir.rglob("*.db"):
        client = MlflowClient(f"sqlite:///{db}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        running = [r.info.run_id for r in client.search_runs(experiments) if r.info.status == "RUNNING"] if experiments else []
        assert not running, f"runs left RUNNING in {db}: {running}"
    empty = [str(p) for p in workdir.glob("checkpoints/*") if p.is_dir() and not any(p.iterdir())]
    assert not empty, f"empty run folders left: {empty}"


@pytest.fixture
def finished_run(workdir):
    """A finished run in the working directory: its last checkpoint."""
    assert main(["train", str(SINE_CONFIG), *QUICK, "evaluation.shots=[5]"]) == 0
    (last,) = workdir.glob("checkpoints/*/last.ckpt")
    return last


@pytest.fixture
def previous_run(finished_run, workdir):
    """A finished run's files in the working directory, and a check that nothing touched them."""
    files = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    last = finished_run
    yield last
    changed = [str(p) for p, data in files.items() if not p.is_file() or p.read_bytes() != data]
    assert not changed, f"bad input changed a previous run's files: {changed}"


def _omniglot(workdir, damage: str):
    from tests.trees import omniglot_tree

    root = omniglot_tree(workdir / f"omniglot_{damage}")
    if damage == "corrupt":
        next(root.glob("images_background/*/*/*.png")).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    elif damage == "empty":
        for char in root.glob("images_background/Beta/*"):
            for png in char.glob("*.png"):
                png.unlink()
    elif damage == "no_alphabets":
        shutil.rmtree(root / "images_background")
        (root / "images_background").mkdir()
    elif damage == "no_alphabet_level":  # <character>/*.png straight under the split folders
        for split in ("images_background", "images_evaluation"):
            for char in list(root.glob(f"{split}/*/*")):
                char.rename(root / split / f"{char.parent.name}_{char.name}")
            for alphabet in [p for p in (root / split).iterdir() if not any(p.glob("*.png"))]:
                alphabet.rmdir()
    return root


@pytest.mark.parametrize(
    "case, expected",
    [
        ("corrupt_image", "cannot read image"),
        ("empty_class_folders", "has no images"),
        ("empty_dataset_folder", "has 7 characters; tasks.class_split=[10, 3, 5] must be three counts"),
        ("truncated_checkpoint_resume", "cannot read checkpoint"),
        ("checkpoint_of_another_config", "was written by a run with model={'name': 'mlp', 'hidden': [40, 40]"),
        ("unreadable_yaml", "bad.yaml as YAML: while parsing a flow sequence"),
        ("binary_yaml", "bin.yaml as a YAML text file: 'utf-8' codec can't decode"),
        ("config_is_a_folder", "checkpoints is a folder, not a config file"),
        ("duplicate_key", "dup.yaml: key 'max_steps' appears twice, on lines 2 and 3"),
        ("duplicate_section", "dup.yaml: key 'trainer' appears twice, on lines 1 and 4"),
        ("no_alphabet_level", "the images sit one level too high: the <alphabet> level is missing"),
        ("hostile_checkpoint_resume", "it holds pickled code or objects (posix.system); distmeta loads only"),
        ("checkpoint_without_config", "is not a complete distmeta checkpoint: its metadata lacks config_yaml"),
        ("resume_into_another_store", "which the store at sqlite:///"),
        ("truncated_tiered_pickle", "train_images_png.pkl is not a readable pickle (UnpicklingError"),
        ("cifar_without_meta", "CIFAR-100 not found under"),
    ],
)
def test_bad_files_exit_2_and_leave_a_previous_run_intact(case, expected, previous_run, workdir, capsys):
    argv = ["train", str(SINE_CONFIG), *QUICK]
    damages = {"corrupt_image": "corrupt", "empty_class_folders": "empty", "empty_dataset_folder": "no_alphabets"}
    if case in damages or case == "no_alphabet_level":
        damage = damages.get(case, case)
        argv = [
            "train",
            str(REPO / "configs/omniglot_5w1s_maml.yaml"),
            f"tasks.root={_omniglot(workdir, damage)}",
            "tasks.class_split=[10,3,5]",
            "tasks.ways=2",
            "tasks.shots=1",
            "tasks.query=1",
            "evaluation.query=2",
            "model.filters=4",
            *QUICK,
        ]
    elif case in ("truncated_tiered_pickle", "cifar_without_meta"):
        from tests.trees import cifar100_tree, tiered_tree

        if case == "truncated_tiered_pickle":
            root = tiered_tree(workdir / "tiered")
            data = (root / "train_images_png.pkl").read_bytes()
            (root / "train_images_png.pkl").write_bytes(data[: len(data) // 3])
        else:
            root = cifar100_tree(workdir / "cifar")
            (root / "cifar-100-python" / "meta").unlink()
        family = "tieredimagenet" if case == "truncated_tiered_pickle" else "cifar_fs"
        argv = ["train", str(REPO / "configs/glyphs_5w1s_maml.yaml"), f"tasks.family={family}", f"tasks.root={root}"]
        argv += ["tasks.ways=2", "tasks.shots=1", "tasks.query=1", "evaluation.query=2", "model.filters=4", *QUICK]
    elif case == "truncated_checkpoint_resume":
        cut = workdir / "cut.ckpt"
        cut.write_bytes(previous_run.read_bytes()[:1000])
        argv += ["--resume", str(cut)]
    elif case == "checkpoint_of_another_config":
        argv += ["model.hidden=[8]", "--resume", str(previous_run)]
    elif case == "unreadable_yaml":
        (workdir / "bad.yaml").write_text("trainer:\n  max_steps: [1, 2\n")
        argv[1] = str(workdir / "bad.yaml")
    elif case == "binary_yaml":
        (workdir / "bin.yaml").write_bytes(bytes(range(256)))
        argv[1] = str(workdir / "bin.yaml")
    elif case == "config_is_a_folder":
        argv[1] = str(workdir / "checkpoints")
    elif case.startswith("duplicate"):
        text = "trainer:\n  max_steps: 30\n  max_steps: 99999\n"
        if case == "duplicate_section":
            text = "trainer:\n  max_steps: 30\nalgorithm: {name: maml}\ntrainer:\n  log_every_n_steps: 5\n"
        (workdir / "dup.yaml").write_text(text)
        argv[1] = str(workdir / "dup.yaml")
    elif case == "hostile_checkpoint_resume":
        torch.save({"distmeta": {}, "state_dict": {}, "payload": _Hostile()}, workdir / "hostile.ckpt")
        argv += ["--resume", str(workdir / "hostile.ckpt")]
    elif case == "checkpoint_without_config":
        saved = torch.load(previous_run, weights_only=True)
        del saved["distmeta"]["config_yaml"]
        torch.save(saved, workdir / "no_config.ckpt")
        argv += ["--resume", str(workdir / "no_config.ckpt")]
    elif case == "resume_into_another_store":  # its run is not in this store (another one, or reset)
        saved = torch.load(previous_run, weights_only=True)
        saved["distmeta"]["run_id"] = "0" * 32
        torch.save(saved, workdir / "elsewhere.ckpt")
        argv += ["--resume", str(workdir / "elsewhere.ckpt")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in " ".join(err.split()), err
    assert "Traceback" not in err and "\x1b" not in err and "weights_only" not in err
    assert not list(workdir.rglob("*.tmp*")), "no half-written dataset cache"


def test_a_format_1_conv4_checkpoint_still_evaluates_but_does_not_resume(workdir):
    """Conv4 lost its convolution biases (format 2): the old weights load without them, which is
    the same network, because the batch normalisation after each convolution cancels a bias."""
    from distmeta import checkpoints, config
    from distmeta.errors import UserError
    from distmeta.models import ModelSpec

    torch.manual_seed(0)
    new = ModelSpec("conv4", (1, 28, 28), 5, filters=4).build()
    old_state = {f"model.{k}": v for k, v in new.state_dict().items()}
    for i in range(4):  # what a format-1 checkpoint held besides
        old_state[f"model.body.{i}.0.bias"] = torch.randn(4)
    cfg = config.load(None, ["tasks.family=glyphs", "model.name=conv4", "model.filters=4"])
    ckpt = {"state_dict": old_state, "distmeta": {"format": 1, "config_yaml": config.to_yaml(cfg)}}
    model = ModelSpec("conv4", (1, 28, 28), 5, filters=4).build()
    model.load_state_dict(checkpoints.model_state(ckpt))  # strict: exactly this version's keys
    x = torch.rand(6, 1, 28, 28)
    torch.testing.assert_close(model(x), new(x))
    conv, norm = model.body[0][0], model.body[0][1]  # the dropped bias never changed a block's output
    biased = torch.nn.functional.conv2d(x, conv.weight, old_state["model.body.0.0.bias"], padding=1)
    torch.testing.assert_close(norm(biased), norm(conv(x)), rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="format-1 Conv4 checkpoint"):
        checkpoints.resumable(ckpt, workdir / "old.ckpt")


def test_eval_refuses_what_it_cannot_log_before_computing_and_reports_what_it_computed(finished_run, workdir, capsys):
    """A run folder is accepted as --checkpoint; an override that changes the network is named as
    the cause; a store that is gone is an error before any work, and makes no new store."""
    assert main(["eval", "--checkpoint", str(finished_run.parent), "--no-mlflow", "evaluation.num_tasks=2"]) == 0
    assert "K=5" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(finished_run), "model.hidden=[8]"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds another network than the config with overrides model.hidden=[8] builds: Unexpected key(s)" in err
    saved = torch.load(finished_run, weights_only=True)
    saved["distmeta"]["run_id"] = "0" * 32  # its run is not in the store (deleted, or another store)
    torch.save(saved, workdir / "orphan.ckpt")
    assert main(["eval", "--checkpoint", str(workdir / "orphan.ckpt")]) == 2
    assert f"belongs to MLflow run {'0' * 32}, which the store at" in " ".join(capsys.readouterr().err.split())
    (workdir / "mlflow.db").rename(workdir / "moved.db")
    assert main(["eval", "--checkpoint", str(finished_run)]) == 2
    assert "no MLflow store at" in " ".join(capsys.readouterr().err.split())
    assert not (workdir / "mlflow.db").exists(), "no stray store was made"
    (workdir / "moved.db").rename(workdir / "mlflow.db")


def test_eval_whose_store_goes_away_mid_eval_prints_its_numbers_and_exits_2(finished_run, workdir, capsys, monkeypatch):
    from distmeta import api

    computing = api._evaluate

    def store_removed_meanwhile(*args, **kwargs):
        out = computing(*args, **kwargs)
        (workdir / "mlflow.db").rename(workdir / "moved.db")  # e.g. a clean-up of the folder
        return out

    monkeypatch.setattr(api, "_evaluate", store_removed_meanwhile)
    assert main(["eval", "--checkpoint", str(finished_run), "evaluation.num_tasks=2"]) == 2
    out, err = capsys.readouterr()
    assert "K=5" in out, "the numbers it computed are printed"
    err = " ".join(err.split())
    assert "the evaluation was not logged to MLflow run" in err and "no MLflow store at" in err, err
    assert "Traceback" not in err
    assert not (workdir / "mlflow.db").exists(), "no stray store was made"
    (workdir / "moved.db").rename(workdir / "mlflow.db")


def test_overrides_after_resume_continue_the_run(finished_run, workdir, capsys):
    assert main(["train", str(SINE_CONFIG), *QUICK, "--resume", str(finished_run), "trainer.max_steps=4"]) == 0
    assert torch.load(finished_run, weights_only=True)["global_step"] == 4


def test_a_nonfinite_stop_says_which_checkpoint_is_left(workdir, capsys):
    bad = "tasks.families=[{name: sine, weight: 200}, {name: linear, label: bad, weight: 1, ranges: {slope: [1e38, 2e38]}}]"
    assert main(["train", str(SINE_CONFIG), bad, *QUICK[1:], "trainer.max_steps=30", "checkpoint.every_n_steps=5"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "non-finite meta-gradient" in err and "the update was not applied and" in err
    assert "the newest checkpoint is " in err or "no checkpoint was written before it" in err
