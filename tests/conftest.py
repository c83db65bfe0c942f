import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# the suite's tiny trainings take a few steps each: tracing the train step costs more than running it
# eagerly (tests/README.md has the numbers); tests marked graph_mode train traced, as users do
os.environ.setdefault("SEQTASKS_RUN_EAGERLY", "1")
# and a decoding loop runs a few tokens once: its XLA compile costs seconds; XLA tests pass xla=True
os.environ.setdefault("SEQTASKS_XLA", "0")
# under pytest-xdist (the README's `-n 2`) each worker is one of two processes on two cores: one
# TensorFlow thread each, so that they do not fight for the cores (a tiny model gains nothing from more);
# subprocesses a test starts inherit it
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import pytest  # noqa: E402

SUITE_RUNS_EAGERLY = os.environ["SEQTASKS_RUN_EAGERLY"]


def pytest_configure(config):
    config.addinivalue_line("markers", "graph_mode: train with traced Keras steps (SEQTASKS_RUN_EAGERLY=0), "
                                       "as users do; module fixtures made for this test are trained so too")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before the test's fixtures are made, so a module-scoped trained run made for it trains traced too."""
    graph = item.get_closest_marker("graph_mode") is not None
    os.environ["SEQTASKS_RUN_EAGERLY"] = "0" if graph else SUITE_RUNS_EAGERLY


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Encoded corpora go to a per-session temporary cache, never the user's ~/.cache."""
    monkeypatch.setenv("SEQTASKS_CACHE", str(tmp_path_factory.getbasetemp() / "seqtasks-cache"))


# ---- tiny trained runs, one per task, shared by every test file that needs a finished run ----------

TINY_TRAIN = dict(epochs=1, steps_per_epoch=2, batch_size=4, lr=1e-2, warmup_steps=1, dropout=0.0,
                  precision="fp32", verbose=0)


def _tiny_data(task: str, folder):
    """A few examples of TASK's data, and the train/finetune arguments that name them."""
    if task in ("lm", "generate"):
        path = folder / ("pairs.jsonl" if task == "generate" else "text.txt")
        path.write_text("".join(f'{{"prompt": "ab{c}", "completion": "{c}ba"}}\n' for c in "cdefgh" * 6)
                        if task == "generate" else "abcdefgh\n" * 60)
        return {"data": str(path)}
    if task == "classify":
        path = folder / "train.tsv"
        path.write_text("text\tlabel\n" + "a good film\tpos\na dull film\tneg\n" * 20)
        return {"data": str(path)}
    if task == "tag":
        path = folder / "train.conll"
        path.write_text("John X B-PER\nsaw X O\nParis X B-LOC\n\nMary X B-PER\nran X O\n\n" * 10)
        return {"data": str(path)}
    if task == "translate":
        path = folder / "pairs.tsv"
        path.write_text("".join(f"{a} {b}\t{b} {a}\n" for a in "abcde" for b in "fghij") * 2)
        return {"data": str(path)}
    if task == "caption":
        from seqtasks.data.make_shapes import make_shapes

        captions = make_shapes(folder / "shapes", count=16, size=16, seed=0)
        return {"images": str(captions.parent / "images"), "captions": str(captions)}
    raise ValueError(task)


# each task's smallest model; lm and generate have two layers (recurrent, Transformer), so that layers:1
# leaves one to train
_TINY_MODELS = {
    "lm": dict(arch="lstm", units=8, layers=2, seq_len=8, sample_tokens=0),
    "generate": dict(arch="transformer", units=8, heads=2, layers=2, seq_len=16, sample_examples=0),
    "classify": dict(arch="transformer", units=8, heads=2, layers=1, tokenizer="word"),
    "tag": dict(arch="lstm", units=8, layers=1, tokenizer="word", char_features="cnn", char_dim=4, char_units=4,
                crf=True),
    "translate": dict(arch="transformer", units=8, heads=2, layers=1, tokenizer="word", sample_examples=0, beam=1),
    "caption": dict(arch="lstm", attention=True, units=8, layers=1, image_size=16, cnn_blocks=2, cnn_filters=4, flip=False,
                    sample_examples=0),
}


class TinyRuns:
    """tiny_runs("tag") -> (the trained Run, the data arguments it was trained on); trained on first use."""

    def __init__(self, folder, cache):
        self.folder, self.cache, self.runs = folder, cache, {}

    def __call__(self, task: str):
        if task not in self.runs:
            import seqtasks

            folder = self.folder / task
            folder.mkdir()
            data = _tiny_data(task, folder)
            with pytest.MonkeyPatch.context() as patch:  # the session cache, whatever the test's fixtures
                patch.setenv("SEQTASKS_CACHE", str(self.cache))
                run = seqtasks.train(task, out=str(folder / "run"), **data, **_TINY_MODELS[task], **TINY_TRAIN)
            self.runs[task] = (run, data)
        return self.runs[task]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> TinyRuns:
    return TinyRuns(tmp_path_factory.mktemp("tiny-runs"), tmp_path_factory.getbasetemp() / "seqtasks-cache")
