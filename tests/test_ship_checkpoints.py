"""training/ship_checkpoints.py: evaluated runs become shipped checkpoints with a model card, and the
committed card is exactly what the shipped files and the repository's notes render."""

import shutil
from pathlib import Path

import pytest
import yaml

from gym_autoencoder import load_model
from tests.helpers import FAST_EVALUATION, copy_frames, untrained_run, write_dataset
from gym_autoencoder.training.evaluate import evaluate_run
from gym_autoencoder.training.ship_checkpoints import (
    NOTES_NAME, ShipError, epochs_text, lineage_rows, main, rates_text, render_card, ship,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), 24, 48)


@pytest.fixture(scope="module")
def evaluated_runs(data_dir, tmp_path_factory) -> list[Path]:
    runs = tmp_path_factory.mktemp("runs")
    dirs = [untrained_run(runs / name, name, data_dir) for name in ("VAE_Paper", "Conv_Unpool")]
    for run in dirs:
        evaluate_run(run, evaluation=FAST_EVALUATION)
    return dirs


@pytest.mark.slow
def test_shipping_copies_models_and_grids_and_writes_the_card(evaluated_runs, tmp_path):
    entries = ship(evaluated_runs, tmp_path)
    assert [e["architecture"] for e in entries] == ["Conv_Unpool", "VAE_Paper"]  # the registry's order
    assert {p.name for p in tmp_path.iterdir()} == {
        "conv_unpool.pt", "conv_unpool_recon_grid.png", "vae_paper.pt", "vae_paper_recon_grid.png", "README.md"}
    model = load_model(tmp_path / "conv_unpool.pt")
    card = (tmp_path / "README.md").read_text()
    psnr = model.metadata["metrics"]["test"]["psnr_db"]
    assert "| Conv_Unpool | `auto-unpool-v0` | 1152 | 43,011 |" in card
    assert f"PSNR {psnr:.2f} dB" in card and "PSNR with the latent zeroed" in card
    assert "## VAE_Paper (`vae-paper-v0`)" in card and "![VAE_Paper reconstructions](vae_paper_recon_grid.png)" in card
    assert "| PSNR >= 33 dB |" in card and "| **mean** |" in card


@pytest.mark.slow
def test_untrained_models_are_reported_as_missing_the_thresholds(evaluated_runs, tmp_path, capsys):
    assert main([*map(str, evaluated_runs), "--out", str(tmp_path)]) == 0
    assert "PSNR >= 22 dB" in capsys.readouterr().out
    assert "| **no** |" in (tmp_path / "README.md").read_text()


def test_a_run_without_evaluation_is_refused(data_dir, tmp_path, capsys):
    run = untrained_run(tmp_path / "Conv_Maxpool", "Conv_Maxpool", data_dir)
    with pytest.raises(ShipError, match="python training/evaluate.py"):
        ship([run], tmp_path / "out")
    assert main([str(run), "--out", str(tmp_path / "out")]) == 2
    assert "has no evaluation metrics" in capsys.readouterr().err


def test_a_run_evaluated_without_labels_is_refused(data_dir, tmp_path):
    unlabelled = copy_frames(data_dir, tmp_path / "unlabelled")
    run = untrained_run(tmp_path / "Conv_Maxpool", "Conv_Maxpool", unlabelled)
    evaluate_run(run, evaluation=FAST_EVALUATION)
    with pytest.raises(ShipError, match="without labels"):
        ship([run], tmp_path / "out")


@pytest.mark.slow
def test_a_run_without_its_training_state_has_no_stop_reason_on_the_card(evaluated_runs, tmp_path):
    ship(evaluated_runs, tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert not (evaluated_runs[0] / "checkpoints" / "last.pt").exists()
    assert "stopped: not recorded (evaluated apart from its training state)." in card
    assert "stopped: None" not in card


def test_the_card_counts_the_epochs_behind_a_fine_tuned_model():
    lineage = {"epochs": 42, "psnr_db": 32.0, "checkpoint": "/machine/runs/base/base.pt",
               "recipe": {"learning_rate": 0.001, "lr_schedule": "cosine", "object_pixel_weight": 10.0,
                          "object_class_balance": True, "data_dir": "/machine/data/balanced"}}
    assert epochs_text({"epochs_trained": 12, "initialised_from": lineage}) == "42 + 12"
    assert epochs_text({"epochs_trained": 12, "initialised_from": None}) == "12"
    recipe = {"learning_rate": 3e-4, "lr_schedule": "cosine", "data_dir": "/machine/data/big",
              "init_from": "/machine/runs/base/base.pt"}
    header, rule, origin, prior, this = lineage_rows(
        {"epochs_trained": 12, "initialised_from": lineage}, recipe, "tuned", 33.0)
    assert origin.startswith("| random initialisation |")
    assert prior == ("| `base` | `balanced` | lr 0.001 (cosine) | object pixel weight 10.0 (class-balanced), "
                     "loss reduction mean | 42 | 32.00 |")
    assert this.startswith("| `tuned` (this file) | `big` | lr 0.0003 (cosine) |") and "| 42 + 12 | 33.00 |" in this
    assert "/machine" not in "".join([origin, prior, this])
    scratch = lineage_rows({"epochs_trained": 12, "initialised_from": None}, {"lr_schedule": "cosine"}, "new", 20.0)
    assert len(scratch) == 4 and scratch[2].startswith("| random initialisation |")
    unevaluated = lineage_rows({"epochs_trained": 12, "initialised_from": {**lineage, "psnr_db": None}},
                               recipe, "tuned", 33.0)
    assert unevaluated[3].endswith("| lr 0.001 (cosine) | object pixel weight 10.0 (class-balanced), "
                                   "loss reduction mean | 42 | not recorded |")


def test_the_card_states_the_learning_rates_a_run_used_not_only_its_last_recipe():
    recipe = {"learning_rate": 0.001, "lr_schedule": "cosine"}  # resumed with 0.001 after epochs at 2e-4
    assert rates_text(recipe, [2e-4, 1.5e-4, 5e-5]) == "lr 0.0002 down to 5e-05 (cosine)"
    assert rates_text({"learning_rate": 0.001, "lr_schedule": "constant"}, [1e-3, 1e-3]) == "lr 0.001 (constant)"
    assert rates_text(recipe, None) == "lr 0.001 (cosine)"
    lineage = {"epochs": 5, "psnr_db": None, "recipe": recipe, "learning_rates": [3e-4, 1e-4]}
    prior = lineage_rows({"epochs_trained": 1, "initialised_from": lineage}, recipe, "run", 20.0)[3]
    assert "| lr 0.0003 down to 0.0001 (cosine) | object pixel weight" in prior and "| 5 |" in prior


def test_the_committed_card_is_what_the_shipped_files_and_the_notes_render():
    committed = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert render_card(SHIPPED) == committed, (
        "checkpoints/README.md is stale; run: python training/ship_checkpoints.py --card-only")


def test_the_card_has_model_card_front_matter_and_a_full_section_per_model():
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    _, front, body = card.split("---\n", 2)
    metadata = yaml.safe_load(front)
    assert set(metadata) == {"license", "library_name", "tags", "datasets", "metrics"}
    assert metadata["datasets"] == ["balanced", "big"] and "psnr" in metadata["metrics"]
    for name in ("Conv_Unpool", "Conv_Maxpool", "Conv_Maxpool_Big", "Conv_No_Bottleneck", "VAE_Paper", "VAE_Alex"):
        section = body.split(f"\n## {name} (")[1].split("\n## ")[0]
        for part in ("### Intended use and limitations", "### Data", "### Recipe", "### Lineage",
                     "### Metrics on held-out levels", f"({name.lower()}_recon_grid.png)"):
            assert part in section, (name, part)
    assert "## A second held-out set" in body and "/work/" not in card


def test_the_card_renders_the_same_from_another_folder(tmp_path):
    for path in [*SHIPPED.glob("*.pt"), SHIPPED / NOTES_NAME]:
        shutil.copyfile(path, tmp_path / path.name)
    assert render_card(tmp_path) == (SHIPPED / "README.md").read_text(encoding="utf-8")
    shutil.copyfile(SHIPPED / "vae_alex.pt", tmp_path / "vae_alex_copy.pt")
    with pytest.raises(ShipError, match="named after its architecture"):
        render_card(tmp_path)


@pytest.mark.slow
def test_card_only_re_renders_the_card_with_the_notes_beside_the_checkpoints(evaluated_runs, tmp_path, capsys):
    ship(evaluated_runs, tmp_path)
    (tmp_path / NOTES_NAME).write_text("About this file.\n\n## Conv_Unpool\n\nUse this one.\n\n"
                                       "## Measured apart\n\nA figure, with its command.\n")
    assert main(["--card-only", "--out", str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "About this file" not in card and "## Measured apart\n\nA figure, with its command.\n" in card
    unpool = card.split("## Conv_Unpool (")[1].split("\n## ")[0]
    assert "### Intended use and limitations\n\nUse this one.\n" in unpool
    assert "card Conv_Unpool: PSNR >= 22 dB" in capsys.readouterr().out
    assert main(["--card-only", "--out", str(tmp_path), "--notes", str(tmp_path / "absent.md")]) == 2
    assert "notes file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
