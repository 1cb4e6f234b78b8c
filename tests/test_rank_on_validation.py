"""pipeline/rank_on_validation.py: a probe's runs ranked on their validation curves alone."""

from __future__ import annotations

from rank_on_validation import main, rank  # pipeline/ is on sys.path (conftest)


def _run(folder, name: str, rows: list[str], model: str = "vae") -> None:
    plots = folder / name / "plots"
    plots.mkdir(parents=True)
    (plots / f"{model}_val.csv").write_text("step,elbo,kl\n" + "\n".join(rows) + "\n")


def test_runs_are_ranked_on_the_last_validation_value_and_test_is_never_read(tmp_path, capsys):
    _run(tmp_path, "a_warm", ["10,-120,5", "20,-95,6"])
    _run(tmp_path, "a_cold", ["10,-100,5", "20,-99,6", "30,,7"])  # the last row without elbo is skipped
    _run(tmp_path, "b_other", ["10,-50,5"])
    (tmp_path / "a_cold" / "evaluate.json").write_text("{not json: a test file must never be read}")
    assert rank(tmp_path, "vae", "elbo", higher=True, prefix="a_") == [("a_warm", 20, -95.0), ("a_cold", 20, -99.0)]
    assert [r[0] for r in rank(tmp_path, "vae", "kl", higher=False)] == ["b_other", "a_warm", "a_cold"]
    assert main([str(tmp_path), "vae", "elbo", "--higher", "--group", "a_"]) == 0
    assert "| 1 | `a_warm/` | 20 | -95.00 |" in capsys.readouterr().out
    assert main([str(tmp_path), "vae", "elbo", "--group", "zzz"]) == 1
