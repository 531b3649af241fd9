"""Pictures: made from stored cells' kept weights, shown on the table pages, never published from real data."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from harness import pictures
from harness.cli import main
from harness.report.collect import collect_tables
from harness.store import Store
from tests.harness.conftest import SCRATCH, TINY_DATA, write_spec

PNG = b"\x89PNG\r\n\x1a\n"


def test_the_sample_is_seeded_distinct_and_ordered():
    a = pictures.sample_indices(70)
    assert list(a) == list(pictures.sample_indices(70)) and len(set(a)) == pictures.SAMPLE == len(a)
    assert list(a) == sorted(a) and list(pictures.sample_indices(3)) == [0, 1, 2]
    assert list(pictures.sample_indices(70, seed=1)) != list(a)


def _page_pictures(report: Path, table: str) -> list[str]:
    html = (report / f"{table}.html").read_text()
    return re.findall(r'<img src="(figures/[^"]+/pictures/[^"]+\.png)"', html)


def _reproduce_and_report(table: str, out: Path) -> list[str]:
    assert main(["reproduce", "--table", table, "--executor", "debug"]) == 0
    assert main(["report", "--table", table, "--out", str(out)]) == 0
    return _page_pictures(out, table)


@pytest.mark.slow
def test_apvit_rows_that_keep_different_tokens_get_token_and_gradcam_pictures(harness_env, tmp_path):
    write_spec(harness_env["tables"], "pic_apvit", [{"label": "no pooling", "set": {"app.k": 196, "atp.r": 1.0}},
                                                    {"label": "APViT", "set": {}}])
    shown = _reproduce_and_report("pic_apvit", tmp_path / "report")
    assert sorted(Path(s).name for s in shown) == ["cam_rafdb.png", "tokens_rafdb.png"]
    for s in shown:
        assert (tmp_path / "report" / s).read_bytes().startswith(PNG)

    # What the token figure draws: all 36 patches for the row without pooling, fewer for APViT's.
    frame = collect_tables(["pic_apvit"], harness_env["results"])
    store = Store(harness_env["results"])
    cells = pictures.picture_cells(frame, "pic_apvit")["rafdb"]
    assert [r for r, _ in cells] == ["no pooling", "APViT"]
    kept = {}
    for row, cid in cells:
        model, rec = pictures.load_cell(store, cid)
        images, classes = pictures.sample_images(rec)
        assert images.shape[0] == pictures.SAMPLE and len(classes) == pictures.SAMPLE
        kept[row] = pictures.token_keeps(model, pictures.prepare(model, rec, images))
    assert [s for s, _ in kept["no pooling"]] == ["APP"] and kept["no pooling"][0][1].all()
    stages = kept["APViT"]
    assert [s for s, _ in stages] == ["APP", "block 2", "block 3"]  # tiny: 4 blocks, ATP in the second half
    counts = [int(m[0].sum()) for _, m in stages]
    assert counts == [29, 26, 23]  # k 160/196 of 36 (half up) = 29, then floor(29 * 0.9), floor(26 * 0.9)
    for (_, before), (_, after) in zip(stages, stages[1:]):
        assert not (after & ~before).any()  # a token ATP keeps was present before it
    maps, preds = pictures.gradcam_maps(model, pictures.prepare(model, rec, images))
    assert maps.shape == (pictures.SAMPLE, 48, 48) and 0 <= maps.min() and maps.max() <= 1 and preds.shape == (6,)


@pytest.mark.slow
def test_pfvit_table_gets_generated_faces_and_gradcam(harness_env, tmp_path):
    scratch = {**SCRATCH, "weights.mae_decoder": "none", "train.epochs": 2}
    spec = {"id": "pic_pfvit", "caption": "test table", "reading": "test",
            "source": {"paper": "PF-ViT", "table": "Table T", "file": "papers/pfvit.txt"},
            "method": "pfvit", "base": {**TINY_DATA, "train.batch_size": 32, **scratch},
            "datasets": [{"key": "rafdb", "label": "RAF-DB"}], "seeds": 1, "baseline": "PF-ViT",
            "rows": [{"label": "PF-ViT", "set": {}},
                     {"label": "w/o separator", "set": {"pfvit.separator": False, "pfvit.disc": "none"}}]}
    (harness_env["tables"] / "pic_pfvit.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shown = _reproduce_and_report("pic_pfvit", tmp_path / "report")
    assert sorted(Path(s).name for s in shown) == ["cam_rafdb.png", "faces_rafdb.png"]
    for s in shown:
        assert (tmp_path / "report" / s).read_bytes().startswith(PNG)

    frame = collect_tables(["pic_pfvit"], harness_env["results"])
    store = Store(harness_env["results"])
    made = {}
    for row, cid in pictures.picture_cells(frame, "pic_pfvit")["rafdb"]:
        model, rec = pictures.load_cell(store, cid)
        x = pictures.prepare(model, rec, pictures.sample_images(rec)[0])
        made[row] = pictures.generated_faces(model, x)
    assert set(made["PF-ViT"]) == {"reconstructed", "poker"}  # the poker face needs the separator's residue
    assert set(made["w/o separator"]) == {"reconstructed"}
    assert made["PF-ViT"]["poker"].shape == x.shape


@pytest.mark.slow
def test_publish_leaves_out_pictures_of_real_data(harness_env, tmp_path):
    write_spec(harness_env["tables"], "pic_real", [{"label": "APViT", "set": {}}])
    assert main(["reproduce", "--table", "pic_real", "--executor", "debug"]) == 0
    assert main(["publish", "--table", "pic_real", "--out", str(tmp_path / "synth_site")]) == 0
    assert len(_page_pictures(tmp_path / "synth_site", "pic_real")) == 2  # synthetic: published

    store = Store(harness_env["results"])
    (cid,) = store.cell_ids()
    path = store.cell_dir(cid) / "record.json"
    rec = json.loads(path.read_text())
    rec["data"]["synthetic"] = False  # as if trained on the licence-gated real RAF-DB
    path.write_text(json.dumps(rec))
    frame = collect_tables(["pic_real"], harness_env["results"])
    assert frame["synthetic"].tolist() == [False] and frame["status"].tolist() == ["ok"]

    assert main(["report", "--table", "pic_real", "--out", str(tmp_path / "local")]) == 0
    assert len(_page_pictures(tmp_path / "local", "pic_real")) == 2  # a local report shows them

    site = tmp_path / "site"
    assert main(["publish", "--table", "pic_real", "--out", str(site)]) == 0
    assert _page_pictures(site, "pic_real") == []
    assert not [p for p in site.rglob("*.png") if "pictures" in p.parts]
    assert 'id="pictures"' not in (site / "pic_real.html").read_text()

    # The site's own guard: a picture that claims to be synthetic but shows a real cell stays out.
    from harness.report.publish import build_site
    from harness.specs import load_spec

    made = pictures.make_pictures(harness_env["results"], frame, [load_spec("pic_real")], tmp_path / "pics")
    assert {m["kind"] for m in made} == {"tokens", "cam"} and not any(m["synthetic"] for m in made)
    lying = [{**m, "synthetic": True} for m in made]
    build_site(tmp_path / "site2", frame, [load_spec("pic_real")], pictures=lying)
    assert _page_pictures(tmp_path / "site2", "pic_real") == []
    assert not list((tmp_path / "site2").rglob("tokens_*.png"))
