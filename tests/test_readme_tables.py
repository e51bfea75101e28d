"""README.md's and docs/results.md's result tables are what ftlab.analysis.headline writes from results/."""
import math
import shutil

import pytest

from ftlab.analysis import headline


def test_readme_tables_match_the_results():
    # When this fails: `uv run python -m ftlab.analysis.headline --write`, then review the diff.
    assert headline.differing(headline.ROOT) == []
    assert headline.main(["--check"]) == 0


def test_mean_std_by_hand():
    # mean (0.80 + 0.90) / 2 = 0.85; sample variance ((0.05)^2 + (0.05)^2) / 1 = 0.005, std 0.070711
    assert headline.mean_std([0.80, 0.90]) == "0.8500 ± 0.0707"
    # mean 0.8; deviations -0.1, 0, 0.1: variance 0.02 / 2 = 0.01, std 0.1
    assert headline.mean_std([0.7, 0.8, 0.9]) == "0.8000 ± 0.1000"
    assert headline.mean_std([0.7134] * 5) == "0.7134 ± 0.0000"  # a deterministic row: std 0
    assert headline.mean_std([0.65]) == "0.6500"  # one run: no std
    assert headline.mean_std([]) == "–"
    assert headline.mean_std([900.0, 1000.0], 0) == "950 ± 71"


def test_headline_rows_from_the_records():
    # restaurant_sup full, 5 seeds: the README's figure comes from these five run.json files.
    row = next(r for r in headline.DEFAULTS if (r.dataset, r.method) == ("restaurant_sup", "full"))
    accs = headline.values(headline.records(row, headline.ROOT), "metrics", "test", "accuracy")
    assert len(accs) == 5 and math.isclose(sum(accs) / 5, 0.8127, abs_tol=5e-5)
    table = headline.headline_table(headline.ROOT)
    assert "| restaurant_sup | full | 5 | 0.8127 ± 0.0092 | 0.7064 ± 0.0163 |" in table
    assert len(table.splitlines()) == 2 + len(headline.DEFAULTS)


@pytest.fixture
def copy_root(tmp_path):
    """A copy of the files headline reads and writes, results/ linked (read only)."""
    (tmp_path / "docs").mkdir()
    for file in headline.FILES:
        shutil.copy(headline.ROOT / file, tmp_path / file)
    (tmp_path / "results").symlink_to(headline.ROOT / "results")
    return tmp_path


def test_a_changed_number_is_found_and_rewritten(copy_root):
    readme = copy_root / "README.md"
    text = readme.read_text(encoding="utf-8")
    readme.write_text(text.replace("0.8127 ± 0.0092", "0.8200 ± 0.0092", 1), encoding="utf-8")
    assert headline.differing(copy_root) == ["README.md"]
    assert headline.differing(copy_root, write=True) == ["README.md"]
    assert readme.read_text(encoding="utf-8") == text
    assert headline.differing(copy_root) == []


def test_missing_markers_are_one_line_errors(copy_root, monkeypatch, capsys):
    readme = copy_root / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace("<!-- headline:end -->", ""), encoding="utf-8")
    with pytest.raises(ValueError, match="README.md: no '<!-- headline:begin -->'"):
        headline.differing(copy_root)
    monkeypatch.setattr(headline, "ROOT", copy_root)
    assert headline.main(["--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: README.md: no") and err.count("\n") == 1


def test_docs_links_climb_to_the_root():
    assert headline._relink("[a](results/a)", "docs/results.md") == "[a](../results/a)"
    assert headline._relink("[a](results/a)", "README.md") == "[a](results/a)"
