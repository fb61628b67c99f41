"""The README's "Adding a model / searcher / dataset / op backend" examples, run as written on tiny twins, so the
documentation cannot drift from the code: each test executes the code blocks of one subsection, in order."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ctrbench.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Adding a model / searcher / dataset / op backend"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def readme_blocks(subsection: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block under `### {subsection}` of the section, in order."""
    text = README.read_text()
    assert SECTION in text, f"README.md lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^### (.+)$", section, flags=re.M)
    bodies = dict(zip(parts[1::2], parts[2::2]))
    assert subsection in bodies, f"no '### {subsection}' in the README section; has {sorted(bodies)}"
    blocks = BLOCK.findall(bodies[subsection])
    assert blocks, f"no code blocks under '### {subsection}'"
    return blocks


def run_python(blocks: list[tuple[str, str]], namespace: dict | None = None) -> dict:
    """Execute the python blocks in one namespace (as one script would) and return it."""
    ns = {"__name__": "readme_example"} if namespace is None else namespace
    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, f"README.md ({SECTION})", "exec"), ns)
    return ns


def run_commands(code: str, replace: dict[str, str] | None = None) -> None:
    """Run each `ctrbench ...` line of a shell block in this process (so run-time registrations are seen)."""
    lines = [ln.split(" #")[0].strip() for ln in code.splitlines()]
    commands = [ln for ln in lines if ln.startswith("ctrbench ")]
    assert commands, "a shell block without ctrbench commands"
    for line in commands:
        for old, new in (replace or {}).items():
            line = line.replace(old, new)
        assert main(shlex.split(line)[1:]) == 0, line


@pytest.fixture
def sandbox(tmp_path, monkeypatch, one_torch_thread):
    """Examples write into a temporary folder (the data root, and the current directory where results/ goes);
    the registries they add to are restored afterwards."""
    from ctrbench.data import registry as data_registry, synthetic, twin_models
    from ctrbench.models import registry as model_registry
    from ctrbench.search import registry as search_registry

    monkeypatch.setenv("CTRBENCH_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    snapshots = [(t, dict(t)) for t in (model_registry.MODELS, search_registry.SEARCHERS, data_registry.DATASETS,
                                        synthetic.KNOBS, twin_models.BUILDERS)]
    yield tmp_path
    for table, saved in snapshots:
        table.clear()
        table.update(saved)


def test_model_example_trains_on_a_twin(sandbox, capsys):
    ns = run_python(readme_blocks("A model"))
    result = ns["result"]
    assert result.status == "ok"
    assert result.test["auc"] > 0.6  # it learned (0.77 here; an untrained model scores about 0.5)
    assert result.oracle_test["oracle_auc"] > result.test["auc"] - 0.05
    from pydantic import ValidationError

    from ctrbench.models.registry import build_model

    cache = ns["cache"]
    with pytest.raises(ValidationError, match="drop_out"):  # its Params reject unknown keys like any model's
        build_model("mean_pool", cache.spec, cache.vocab_sizes, {"drop_out": 0.1})
    assert main(["models", "mean_pool"]) == 0
    assert "dropout" in capsys.readouterr().out


def test_searcher_example_runs_as_a_suite_entry(sandbox):
    blocks = readme_blocks("A searcher")
    run_python(blocks)
    (suite_yaml,) = [code for lang, code in blocks if lang == "yaml"]
    path = sandbox / "fixed_list_demo.yaml"
    path.write_text(suite_yaml)
    assert main(["run", str(path)]) == 0
    assert main(["report", str(path)]) == 0
    from ctrbench.runs.store import RunStore

    store = RunStore(sandbox / "results" / "fixed_list_demo" / "runs.sqlite")
    records = store.records(suite="fixed_list_demo")
    assert sorted(r.candidate_index for r in records) == [0, 1]
    assert {r.status for r in records} == {"ok"}
    assert sorted(r.config["params"]["num_cross_layers"] for r in records) == [1, 3]
    assert "fixed_list search, 2 candidates" in (sandbox / "results" / "fixed_list_demo" / "table.md").read_text()


def _write_csvs(folder: Path, rows: int = 400) -> None:
    """Tiny train/valid/test CSVs in the example dataset's layout: price,user,item,shop,device,clicked."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir()
    for split in ("train", "valid", "test"):
        lines = ["price,user,item,shop,device,clicked"]
        for _ in range(rows):
            ids = rng.integers(0, 30, 4)
            lines.append(f"{rng.gamma(2.0):.3f},u{ids[0]},i{ids[1]},s{ids[2]},d{ids[3] % 3},{int(rng.random() < 0.2)}")
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def test_dataset_example_prepares_real_files_and_builds_its_twin(sandbox):
    from ctrbench.data.api import open_dataset

    blocks = readme_blocks("A dataset")
    run_python(blocks)
    source = sandbox / "MyTab_x1"
    _write_csvs(source)
    (shell,) = [code for lang, code in blocks if lang == "bash"]
    run_commands(shell, {"/path/to/MyTab_x1": str(source)})
    real = open_dataset("mytab_x1", "real")
    assert real.split("train").rows == 400 and real.split("test").rows == 400
    assert set(real.vocab_sizes) == {"user", "item", "shop", "device"}
    twin = open_dataset("mytab_x1", "synthetic", rows=3000)
    assert twin.split("train").rows + twin.split("valid").rows + twin.split("test").rows == 3000
    assert 0.5 < twin.manifest["twin"]["oracle"]["test"]["oracle_auc"] < 1.0


def test_op_backend_example_checks_every_backend_against_the_reference(sandbox):
    ns = run_python(readme_blocks("An op backend"))
    assert "reference" in ns["available_backends"]("cpu")
