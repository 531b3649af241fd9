"""`predict`: class probabilities for image files, from a stored cell or a checkpoint, through the CLI."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli import main
from harness.data.labels import CANONICAL_CLASSES
from harness.store import Store
from tests.harness.conftest import write_spec


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _checkpoint(path: Path, model: str = "apvit", **kwargs) -> Path:
    """A tiny model's state dict, its classifier drawn at random (a zero head predicts uniformly)."""
    from harness.run.overrides import build_model

    torch.manual_seed(0)
    state = build_model(model, "tiny", {}, **kwargs).state_dict()
    for key in ("head.weight", "head.bias"):
        state[key] = torch.randn_like(state[key])
    torch.save(state, path)
    return path


@pytest.fixture
def astronaut(tmp_path) -> Path:
    from skimage import data

    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_astronaut_from_a_checkpoint_one_row_of_probabilities(tmp_path, astronaut, capsys):
    ck = _checkpoint(tmp_path / "apvit_tiny.pt")
    out = tmp_path / "pred.csv"
    argv = ["predict", str(astronaut), "--checkpoint", str(ck), "--model", "apvit", "--preset", "tiny",
            "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    header, rows = _read(out)
    assert header == ["path", "predicted", *CANONICAL_CLASSES[:7]]  # a 7-class model: seven columns
    assert len(rows) == 1 and rows[0]["path"] == str(astronaut)
    probs = [float(rows[0][c]) for c in CANONICAL_CLASSES[:7]]
    assert sum(probs) == pytest.approx(1.0, abs=1e-9) and min(probs) > 0
    assert rows[0]["predicted"] == CANONICAL_CLASSES[int(np.argmax(probs))]

    assert main(argv) == 2 and "exists; pass --force" in capsys.readouterr().err
    assert main([*argv, "--force", "--align", "mtcnn"]) == 0
    header, rows = _read(out)
    assert header[-1] == "align_status" and rows[0]["align_status"] == "aligned"  # MTCNN finds her face
    assert sum(float(rows[0][c]) for c in CANONICAL_CLASSES[:7]) == pytest.approx(1.0, abs=1e-9)


def test_an_eight_class_checkpoint_gets_eight_columns(tmp_path, astronaut, capsys):
    ck = _checkpoint(tmp_path / "apvit8.pt", num_classes=8)
    out = tmp_path / "pred8.csv"
    assert main(["predict", str(astronaut), "--checkpoint", str(ck), "--model", "apvit", "--preset", "tiny",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    header, rows = _read(out)
    assert header[2:] == list(CANONICAL_CLASSES) and sum(float(rows[0][c]) for c in header[2:]) == pytest.approx(1.0)


def test_a_stored_cell_predicts_its_own_test_images_at_its_recorded_accuracy(harness_env, tmp_path, capsys):
    """The stand-in's test split written as PNGs (the decoded uint8 images, losslessly, at the size
    the cell decoded them to) gives back exactly the accuracy and predictions the cell recorded."""
    from harness.data import load_dataset

    write_spec(harness_env["tables"], "pred_tab", [{"label": "apvit", "set": {}}])
    assert main(["reproduce", "--table", "pred_tab", "--executor", "debug"]) == 0
    store = Store(harness_env["results"])
    (cid,) = store.cell_ids()
    rec = store.record(cid)
    assert rec["weights_file"]["file"] == "model.pt"
    cell = rec["cell"]
    data = load_dataset(cell["dataset"], cell["data_root"], protocol=cell["protocol"],
                        decode_size=rec["recipe"]["img_size"])
    test = data.splits["test"]
    folder = tmp_path / "faces"
    truth = {}
    for i, (image, label) in enumerate(zip(test.images, test.labels.tolist())):
        # the second half in a sub-folder: the search is recursive; names keep the split's order
        path = folder / ("more" if i >= len(test) // 2 else "") / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        truth[str(path)] = label
    (folder / "labels.txt").write_text("not an image: skipped in a folder")

    out = tmp_path / "cell.csv"
    threads = str(rec["provenance"]["threads"])  # the cell's thread count: its logits bit for bit
    assert main(["predict", str(folder), "--cell", cid, "--threads", threads, "--out", str(out)]) == 0, \
        capsys.readouterr().err
    header, rows = _read(out)
    names = rec["class_names"]
    assert header == ["path", "predicted", *names] and len(rows) == len(test)
    y_true = np.array([truth[r["path"]] for r in rows])
    y_pred = np.array([names.index(r["predicted"]) for r in rows])
    assert float((y_true == y_pred).mean() * 100) == rec["metrics"]["accuracy"]
    assert np.array_equal(y_pred, store.predictions(cid)["y_pred"])
    assert all(sum(float(r[c]) for c in names) == pytest.approx(1.0, abs=1e-9) for r in rows)

    by_table = tmp_path / "table.csv"
    assert main(["predict", str(folder), "--table", "pred_tab", "--row", "apvit", "--dataset", "rafdb",
                 "--seed", "0", "--threads", threads, "--out", str(by_table)]) == 0
    assert by_table.read_text() == out.read_text()


@pytest.fixture
def bad_input_env(harness_env, tmp_path, astronaut):
    write_spec(harness_env["tables"], "pred_tab", [{"label": "apvit", "set": {}}])
    Store(harness_env["results"])  # an empty store
    text = tmp_path / "notes.png"
    text.write_text("a text file with an image's name")
    (tmp_path / "empty").mkdir()
    return {"ck": str(_checkpoint(tmp_path / "apvit_tiny.pt")), "image": str(astronaut), "text": str(text),
            "empty": str(tmp_path / "empty"), "out": str(tmp_path / "out.csv")}


@pytest.mark.parametrize("case, needle", [
    ("unknown_model", "unknown model 'no_such_model'"),
    ("unknown_cell", "unknown cell 'feedfacefeedface'"),
    ("unknown_table", "unknown table 'no_such_table'"),
    ("unknown_row", "--row 'no_such_row' is not a row of pred_tab; allowed values: apvit"),
    ("unknown_dataset", "--dataset 'ferplus' is not a column of pred_tab; allowed values: rafdb"),
    ("no_result", "no result in"),
    ("wrong_architecture", "the weights do not match the model: "),
    ("not_an_image", "notes.png is not an image"),
    ("empty_folder", "folder holds no image files"),
    ("two_sources", "predict needs one model source"),
])
def test_bad_input_is_one_error_line_and_exit_2(bad_input_env, case, needle, capsys):
    e = bad_input_env
    ck = ["--checkpoint", e["ck"], "--model", "apvit", "--preset", "tiny"]
    table = ["--table", "pred_tab", "--row", "apvit", "--dataset", "rafdb", "--seed", "0"]
    argv = {"unknown_model": [e["image"], "--checkpoint", e["ck"], "--model", "no_such_model"],
            "unknown_cell": [e["image"], "--cell", "feedfacefeedface"],
            "unknown_table": [e["image"], *table[:0], "--table", "no_such_table", *table[2:]],
            "unknown_row": [e["image"], *table[:2], "--row", "no_such_row", *table[4:]],
            "unknown_dataset": [e["image"], *table[:4], "--dataset", "ferplus", *table[6:]],
            "no_result": [e["image"], *table],
            # an APViT state dict is no TransFER: TransFER's LANet branches are missing from it
            "wrong_architecture": [e["image"], "--checkpoint", e["ck"], "--model", "transfer", "--preset", "tiny"],
            "not_an_image": [e["image"], e["text"], *ck],
            "empty_folder": [e["empty"], *ck],
            "two_sources": [e["image"], *ck, "--cell", "feedfacefeedface"]}[case]
    assert main(["predict", *argv, "--out", e["out"]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    if case == "wrong_architecture":
        assert "missing keys: local_cnns." in err
    assert not Path(e["out"]).exists()
