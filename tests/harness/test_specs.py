"""Table specs: schema validation, row generation, error messages."""
from pathlib import Path

import pytest
import yaml

from harness.errors import UserError
from harness.specs import NOT_REPORTED, list_specs, load_spec, load_yaml


def _write(tmp_path: Path, data: dict, name: str = "t_tab1") -> Path:
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path


def _spec(**kw) -> dict:
    base = {"id": "t_tab1", "caption": "c", "source": {"paper": "P", "table": "Table 1", "file": "p.txt"},
            "method": "apvit", "base": {"app.k": 160}, "datasets": [{"key": "rafdb", "label": "RAF-DB"}],
            "seeds": 2, "baseline": "a", "rows": [{"label": "a", "paper": {"rafdb": 90.0}},
                                                   {"label": "b", "set": {"head": "gap"}}]}
    base.update(kw)
    return base


def test_every_shipped_spec_loads():
    ids = list_specs()
    assert "apvit_tab5" in ids
    for tid in ids:
        spec = load_spec(tid)
        assert spec.rows and spec.datasets
        assert spec.baseline is None or spec.baseline in [r.label for r in spec.rows]


def test_tab5_reading_matches_the_paper():
    spec = load_spec("apvit_tab5")
    assert [r.label for r in spec.rows] == ["LANet / SUM", "MAX / SUM", "SUM / SUM", "ABS / SUM",
                                            "ABS / ABS", "ABS / MAX"]
    method, full = spec.resolved(spec.row("ABS / SUM"))
    assert (method, full["app.criterion"], full["atp.criterion"]) == ("apvit", "abs", "sum")
    assert spec.paper_value("ABS / SUM", "rafdb") == 91.98
    assert spec.paper_value("LANet / SUM", "affectnet") == 66.28
    assert spec.resolved(spec.row("ABS / MAX"))[1]["atp.criterion"] == "max"


def test_not_reported_and_row_defaults(tmp_path):
    spec = load_spec("t_tab1", _write(tmp_path, _spec()))
    assert spec.paper_value("b", "rafdb") is None
    assert spec.resolved(spec.row("b"))[1] == {"app.k": 160, "head": "gap"}


def test_product_with_exclusion_and_label_template(tmp_path):
    rows = [{"generate": {"product": {"app.k": [196, 160], "atp.r": [1.0, 0.9]}, "label": "k={app_k} r={atp_r}",
                          "paper": {"rafdb": {"k=160 r=0.9": 66.94}},
                          "exclude": [{"when": {"app.k": 196, "atp.r": 0.9}, "reason": "not in the figure"}]}}]
    spec = load_spec("t_tab1", _write(tmp_path, _spec(rows=rows, baseline="k=196 r=1.0")))
    assert [r.label for r in spec.rows] == ["k=196 r=1.0", "k=160 r=1.0", "k=160 r=0.9"]
    assert spec.excluded == [{"label": "k=196 r=0.9", "set": {"app.k": 196, "atp.r": 0.9},
                              "reason": "not in the figure"}]
    assert spec.paper_value("k=160 r=0.9", "rafdb") == 66.94
    assert spec.paper_value("k=160 r=1.0", "rafdb") is None


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["rows"][1].update(colour="red"), "rows.1"),
    (lambda d: d.update(metric="f1"), "allowed values"),
    (lambda d: d.update(baseline="zzz"), "baseline 'zzz' is not a row label"),
    (lambda d: d["rows"][0].update(paper={"ferplus": 1.0}), "unknown dataset 'ferplus'"),
    (lambda d: d["rows"][0].update(paper={"rafdb": "n/a"}), "rows.0"),
    (lambda d: d["rows"].append({"label": "a"}), "duplicate row labels"),
])
def test_bad_specs_name_file_row_and_key(tmp_path, mutate, needle):
    data = _spec()
    mutate(data)
    with pytest.raises(UserError) as err:
        load_spec("t_tab1", _write(tmp_path, data))
    assert "t_tab1.yaml" in str(err.value) and needle in str(err.value)


def test_misspelt_table_suggests_nearest():
    with pytest.raises(UserError, match="Did you mean apvit_tab5"):
        load_spec("apvit_tab55")


def test_not_reported_literal(tmp_path):
    data = _spec()
    data["rows"][1]["paper"] = {"rafdb": NOT_REPORTED}
    assert load_spec("t_tab1", _write(tmp_path, data)).paper_value("b", "rafdb") is None


def test_per_dataset_overrides_apply_last_and_only_in_their_column(tmp_path):
    data = _spec(datasets=[{"key": "rafdb", "label": "RAF-DB", "set": {"head": "clt"}},
                           {"key": "affectnet", "label": "AffectNet", "set": {"head": "clt"}}])
    data["rows"][1]["per_dataset"] = {"affectnet": {"app.k": 120, "head": "gap"}}
    spec = load_spec("t_tab1", _write(tmp_path, data))
    raf, aff = spec.datasets
    assert spec.resolved(spec.row("b"), raf)[1] == {"app.k": 160, "head": "gap"}
    assert spec.resolved(spec.row("b"), aff)[1] == {"app.k": 120, "head": "gap"}
    assert spec.resolved(spec.row("a"), aff)[1] == {"app.k": 160, "head": "clt"}


def test_scale_set_applies_at_its_scale_only_and_a_row_still_wins(tmp_path):
    data = _spec(scale_set={"tiny": {"train.epochs": 4, "app.k": 100}})
    data["rows"][1]["set"] = {"app.k": 120}
    spec = load_spec("t_tab1", _write(tmp_path, data))
    assert spec.resolved(spec.row("a"), scale="tiny")[1] == {"app.k": 100, "train.epochs": 4}
    assert spec.resolved(spec.row("b"), scale="tiny")[1] == {"app.k": 120, "train.epochs": 4}
    assert spec.resolved(spec.row("a"), scale="paper")[1] == {"app.k": 160}
    with pytest.raises(UserError, match="huge"):
        load_spec("t_tab1", _write(tmp_path, _spec(scale_set={"huge": {"train.epochs": 4}})))


def test_per_dataset_for_an_unknown_dataset_is_rejected(tmp_path):
    data = _spec()
    data["rows"][0]["per_dataset"] = {"ferplus": {"app.k": 120}}
    with pytest.raises(UserError, match="per_dataset overrides for unknown dataset 'ferplus'"):
        load_spec("t_tab1", _write(tmp_path, data))


def test_transfer_specs_read_from_the_prose():
    tab1 = load_spec("transfer_tab1")
    raf, aff = tab1.datasets
    base = tab1.resolved(tab1.row("– / – / –"), raf)[1]
    assert (base["transfer.branches"], base["transfer.drop"], base["transfer.msad"]) == (0, "none", "none")
    full = tab1.resolved(tab1.row("Local CNNs / MAD / MSAD"), aff)[1]
    assert (full["transfer.branches"], full["transfer.p1"], full["transfer.p2"]) == (4, 0.2, 0.6)
    assert [tab1.paper_value(r.label, "rafdb") for r in tab1.rows] == [89.93, 90.03, 90.35, 90.91]
    tab4 = load_spec("transfer_tab4")
    assert tab4.resolved(tab4.row("Drop Block"), tab4.datasets[1])[1]["transfer.dropblock_size"] == 9
    # TransFER in APViT's tables runs the same configuration as its own Table 1's full model
    tab7 = load_spec("apvit_tab7")
    assert tab7.resolved(tab7.row("TransFER*"), tab7.datasets[1]) == ("transfer", full)
    fig3 = load_spec("transfer_fig3")
    assert fig3.paper_value("B=2", "rafdb") == 90.91 and fig3.paper_value("B=5", "rafdb") is None


_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, needle", [
    (_LAUGHS, "expands to more than"),  # "billion laughs": 9**9 strings through aliases
    ("id: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 20 levels at line 1"),
    ("a: &a [1]\n" + "b: " + "[" * 15 + "*a" + "]" * 15 + "\n" + "c: &c " + "[" * 10 + "1" + "]" * 10 + "\n"
     + "d: " + "[" * 15 + "*c" + "]" * 15 + "\n", "nested deeper than 20 levels through aliases"),
    ("a: &a [*a]\n", "refers to its own anchor"),
])
def test_yaml_bombs_are_refused_naming_the_file(tmp_path, text, needle):
    (tmp_path / "t_tab1.yaml").write_text(text)
    with pytest.raises(UserError) as err:
        load_spec("t_tab1", tmp_path)
    assert str(err.value).startswith(str(tmp_path / "t_tab1.yaml")) and needle in str(err.value)


def test_load_yaml_is_safe_and_rejects_repeated_keys(tmp_path):
    path = tmp_path / "stage.yaml"
    path.write_text("model: apvit\nbase: &b {app.k: 160}\nrows: [*b, *b]\n")
    assert load_yaml(path) == {"model": "apvit", "base": {"app.k": 160}, "rows": [{"app.k": 160}] * 2}
    path.write_text("model: apvit\nset: {}\nmodel: transfer\n")
    with pytest.raises(UserError, match=r"stage.yaml: duplicate key 'model' at line 3 \(first at line 1\)"):
        load_yaml(path)
    path.write_text("x: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(UserError, match="stage.yaml: not valid YAML"):
        load_yaml(path)


@pytest.mark.parametrize("figures, needle", [
    ([{"kind": "heatmap", "y": "app.k"}], "figures.0 (line 23) (figure 1, 'heatmap'): a heatmap needs 'x'"),
    ([{"kind": "cost"}, {"kind": "heatmap"}], "figure 2, 'heatmap'): a heatmap needs 'x' and 'y'"),
    ([{"kind": "pie"}], "figures.0.kind"),
    ([{"kind": "cost", "x": "app.k"}], "a cost figure takes no 'x'"),
    ([{"kind": "heatmap", "x": "atp.r", "y": "app.k"}],
     "figures.0 (line 23) (figure 1, 'heatmap'): x 'atp.r' is not an override key of any row"),
    ([{"kind": "heatmap", "x": "head", "y": "app.k", "dataset": "ferplus"}], "dataset 'ferplus' is not a column"),
])
def test_bad_figures_are_refused_at_load(tmp_path, figures, needle):
    with pytest.raises(UserError) as err:
        load_spec("t_tab1", _write(tmp_path, _spec(figures=figures)))
    assert "t_tab1.yaml" in str(err.value) and needle in str(err.value)


def test_a_heatmap_over_row_keys_loads(tmp_path):
    spec = load_spec("t_tab1", _write(tmp_path, _spec(figures=[{"kind": "heatmap", "x": "head", "y": "app.k"}])))
    assert spec.figures == [{"kind": "heatmap", "x": "head", "y": "app.k"}]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.update(caption="a\x1b[2Jb"), "caption (line 2): the value contains the control character U+001B"),
    (lambda d: d.update(reading="nul\x00"), "reading (line "),
    (lambda d: d["rows"][1].update(label="\u202eevil"), "rows.1.label (line "),
    (lambda d: d["rows"][0].update(note="c1 \x9b"), "rows.0.note"),
    (lambda d: d["datasets"][0].update(label="RAF\u2066-DB"), "datasets.0.label"),
    (lambda d: d["base"].update({"app\rk": 1}), "base.app\\rk (line 10): the key contains"),
])
def test_control_characters_are_refused_naming_the_field(tmp_path, mutate, needle):
    data = _spec()
    mutate(data)
    with pytest.raises(UserError) as err:
        load_spec("t_tab1", _write(tmp_path, data))
    assert "t_tab1.yaml" in str(err.value) and needle in str(err.value)


def test_newlines_and_tabs_are_plain_text(tmp_path):
    spec = load_spec("t_tab1", _write(tmp_path, _spec(caption="two\nlines", reading="a\tb")))
    assert spec.caption == "two\nlines" and spec.reading == "a\tb"


def _generated(tmp_path: Path, **gen) -> Path:
    block = {"generate": {"product": {"app.k": [120, 160], "atp.r": [0.8, 0.9]}, "label": "k={app_k} r={atp_r}", **gen}}
    return _write(tmp_path, _spec(rows=[{"label": "a", "paper": {"rafdb": 90.0}}, block]))


@pytest.mark.parametrize("rule, needle", [({"app.kk": 120}, "'app.kk' is not a generated key"),
                                          ({"app.k": "120"}, "app.k='120' is none of its values"),
                                          ({"app.k": 121}, "app.k=121 is none of its values")])
def test_an_exclude_rule_that_can_match_nothing_is_refused(tmp_path, rule, needle):
    _generated(tmp_path, exclude=[{"when": rule, "reason": "r"}])
    with pytest.raises(UserError, match=f"exclude rule 1: {needle}"):
        load_spec("t_tab1", tmp_path)


def test_paper_values_for_labels_no_row_has_are_refused(tmp_path):
    _generated(tmp_path, paper={"rafdb": {"k=120 r=0.8": 88.0, "k=999 r=0.8": 87.0}})
    with pytest.raises(UserError, match=r"paper values for 'rafdb' name \['k=999 r=0.8'\]"):
        load_spec("t_tab1", tmp_path)
    _generated(tmp_path, paper={"rafdb": {"k=120 r=0.8": 88.0}})
    assert load_spec("t_tab1", tmp_path).paper_value("k=120 r=0.8", "rafdb") == 88.0


def test_a_giant_product_is_refused_before_expanding(tmp_path):
    big = {"app.k": list(range(1, 201)), "atp.r": [i / 1000 for i in range(1, 101)]}
    _write(tmp_path, _spec(rows=[{"label": "a"}, {"generate": {"product": big, "label": "{app_k} {atp_r}"}}]))
    with pytest.raises(UserError, match="makes 20000 rows, more than 10000"):
        load_spec("t_tab1", tmp_path)


def test_an_empty_tables_variable_means_the_repositorys(monkeypatch):
    from harness.specs import TABLES_DIR, tables_dir

    monkeypatch.setenv("FERBENCH_TABLES", "")
    assert tables_dir() == TABLES_DIR
