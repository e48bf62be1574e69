"""DINO actions the built-in engine does not implement (distill): the engine CLI refuses them
with a message naming the TAO engine, and writes no results (the runtime's placement answer for
the same case is tested in tests/integration/test_service.py)."""

from __future__ import annotations

from taoskills.engine import cli, registry


def test_dino_distill_names_the_tao_engine(tmp_path, capsys):
    assert not registry.supports("dino", "distill")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"results_dir: {tmp_path / 'r'}\n", encoding="utf-8")
    assert cli.main(["dino", "distill", "-e", str(spec)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "'distill' is not supported for dino by the built-in engine" in err
    assert "TAO engine" in err and "engine='tao'" in err
    assert not (tmp_path / "r").exists()
