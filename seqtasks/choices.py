"""The values a model option may take, in a module that imports no TensorFlow.

The task settings (tasks/cards/) offer these as the choices of their flags, so `--help` lists them
before TensorFlow starts; the layers and models that implement each option check against the same
tuples.
"""
ARCHITECTURES = ("rnn", "gru", "lstm", "transformer")    # the encoder of classify and tag (models.encoder)
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")              # Transformer feed-forward (layers.attention)
POOLING_KINDS = ("last", "mean", "max", "attention")     # token states -> one vector (layers.pooling)
CHAR_FEATURE_KINDS = ("none", "cnn", "lstm")             # character features of a word (layers.char_features)
ATTENTION_KINDS = ("none", "bahdanau", "luong")          # recurrent seq2seq attention (models.seq2seq)
BACKBONES = ("cnn", "efficientnet-lite0", "efficientnetb0", "mobilenetv2", "resnet50")  # image encoders (models.image_encoder)
INITIAL_STATES = ("grid", "mean")                        # a captioning LSTM's first state (models.captioner)
