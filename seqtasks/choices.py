"""The values a model option may take, in a module that imports no TensorFlow.

The task settings (tasks/cards/) offer these as the choices of their flags, so `--help` lists them
before TensorFlow starts; the layers and models that implement each option check against the same
tuples.
"""
ARCHITECTURES = ("rnn", "gru", "lstm", "transformer")    # the encoder of classify and tag (models.encoder)
RECURRENT_CELLS = ("rnn", "gru", "lstm", "lstm-peephole")  # recurrent cells (layers.recurrent), --cell
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")              # Transformer feed-forward (layers.attention)
POOLING_KINDS = ("last", "mean", "max", "attention")     # token states -> one vector (layers.pooling)
CHAR_FEATURE_KINDS = ("none", "cnn", "lstm")             # character features of a word (layers.char_features)
ATTENTION_KINDS = ("none", "bahdanau", "luong")          # recurrent seq2seq attention (models.seq2seq)
BACKBONES = ("cnn", "efficientnetb0", "mobilenetv2", "resnet50")  # image encoders (models.image_encoder)
INITIAL_STATES = ("grid", "mean")                        # a captioning LSTM's first state (models.captioner)
SMOOTHINGS = ("kneser-ney", "witten-bell", "add-k")    # n-gram language models (ngram_counts)


def recurrent_cell(arch: str, cell: str = "auto") -> str:
    """The recurrent cell that --arch and --cell ask for together: --cell auto is the cell --arch
    names; otherwise --cell refines it (--arch lstm --cell lstm-peephole) and must be of its family."""
    if cell in ("auto", "", arch):
        return arch
    if arch not in RECURRENT_CELLS or cell.split("-")[0] != arch:
        from seqtasks.errors import UserError

        family = cell.split("-")[0]
        raise UserError(f"--cell {cell} does not fit --arch {arch}",
                        fix=f"use --arch {family} --cell {cell}, or leave --cell at auto")
    return cell
