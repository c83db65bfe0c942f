"""Every class seqtasks writes into a .keras file, imported so that Keras knows it by its registered
name. seqtasks.model_files.load_model and seqtasks.api import this module before a model is loaded or
built, so `keras.saving.load_model(RUN/model.keras, safe_mode=True)` works after `import seqtasks.api`.
"""
import seqtasks.backend  # noqa: F401  (first: TensorFlow starts with its start-up chatter silenced)
from seqtasks import layers, losses  # noqa: F401
from seqtasks.models import (captioner, classifier, image_encoder, language_model, ngram, seq2seq,  # noqa: F401
                             tagger, transformer_seq2seq)
