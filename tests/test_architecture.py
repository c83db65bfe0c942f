"""The import rules of docs/ARCHITECTURE.md, checked on the source: every seqtasks module belongs to
one layer, and imports only from its own layer or those below. A new module must be given a layer
here (the test names it), which is the moment to decide where it belongs."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# lowest first; a module is placed by its longest matching name
LAYERS = {
    "base": ["seqtasks.errors", "seqtasks.choices", "seqtasks.encoder_settings", "seqtasks.files",
             "seqtasks.config", "seqtasks.configs", "seqtasks.datafiles", "seqtasks.runs", "seqtasks.disk_cache",
             "seqtasks.progress", "seqtasks.backend", "seqtasks.run_lock", "seqtasks.schemes", "seqtasks.bulk_tokens",
             "seqtasks.tokenizers", "seqtasks.graph_text",
             "seqtasks.graph_schemes", "seqtasks.readers", "seqtasks.plotting", "seqtasks.losses", "seqtasks.metrics",
             "seqtasks.tag_scores", "seqtasks.training", "seqtasks.distributed", "seqtasks.data", "seqtasks.ngram_counts",
             "seqtasks.word_vectors", "seqtasks.torch_weights"],
    "kernels": ["seqtasks.layers", "seqtasks.decoding"],
    "models": ["seqtasks.models", "seqtasks.serializables", "seqtasks.saved_layout", "seqtasks.model_files"],
    "middle": ["seqtasks.pipeline", "seqtasks.batching", "seqtasks.sequence_inputs", "seqtasks.translation_data",
               "seqtasks.completion_data", "seqtasks.image_pipeline", "seqtasks.generation", "seqtasks.translator",
               "seqtasks.captioning", "seqtasks.ngram_estimation", "seqtasks.pretrained_embeddings",
               "seqtasks.gradient_flow", "seqtasks.serving_inputs", "seqtasks.serving_labels",
               "seqtasks.serving_generation", "seqtasks.export", "seqtasks.tag_validation"],
    "tasks": ["seqtasks.tasks"],
    "api": ["seqtasks.api", "seqtasks"],
    "cli": ["seqtasks.cli", "seqtasks.serving"],
}
RANK = {prefix: rank for rank, prefixes in enumerate(LAYERS.values()) for prefix in prefixes}
NAMES = list(LAYERS)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] == "tasks":  # the top-level tasks/ is seqtasks.tasks (a symlink in a checkout)
        parts = ("seqtasks", *parts)
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def layer_of(name: str) -> int | None:
    matches = [prefix for prefix in RANK if name == prefix or name.startswith(prefix + ".")]
    return RANK[max(matches, key=len)] if matches else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("seqtasks")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("seqtasks"):
            # `from seqtasks import decoding` imports the module seqtasks.decoding
            found += [(node.lineno, f"{node.module}.{alias.name}" if layer_of(f"{node.module}.{alias.name}") is not None
                       and node.module == "seqtasks" else node.module) for alias in node.names]
    return found


SOURCES = sorted(p for p in [*(ROOT / "seqtasks").rglob("*.py"), *(ROOT / "tasks").rglob("*.py")]
                 if not (p.is_relative_to(ROOT / "seqtasks" / "tasks") or p.is_relative_to(ROOT / "seqtasks" / "data")))


def test_every_module_has_a_layer():
    unplaced = [module_name(path) for path in SOURCES if layer_of(module_name(path)) is None]
    assert not unplaced, f"give these modules a layer in tests/test_architecture.py and docs/ARCHITECTURE.md: {unplaced}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_go_down_or_sideways(path):
    source = module_name(path)
    rank = layer_of(source)
    upward = [f"line {line}: {target} ({NAMES[layer_of(target)]})" for line, target in imports_of(path)
              if layer_of(target) is not None and layer_of(target) > rank]
    assert not upward, f"{source} ({NAMES[rank]}) imports from a higher layer: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    """The rule can fail: a layer importing the API is caught."""
    (tmp_path / "x.py").write_text("from seqtasks.api import Run\n")
    assert [layer_of(target) for _, target in imports_of(tmp_path / "x.py")] == [RANK["seqtasks.api"]]
    assert RANK["seqtasks.api"] > RANK["seqtasks.layers"]


def test_no_private_name_crosses_a_module():
    crossing = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqtasks"):
                crossing += [f"{module_name(path)}: {node.module}.{alias.name}" for alias in node.names
                             if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not crossing, crossing
