"""seqtasks' Keras layers: each registered for saving, each documented with the equation it computes."""
from seqtasks.layers.attention import FeedForward, MultiHeadAttention, TransformerBlock, causal_attention_mask, kv_pairs
from seqtasks.layers.transformer_decoder import TransformerDecoder
from seqtasks.layers.attentional_decoder import AttentionalDecoder
from seqtasks.layers.position import LearnedPosition, SinusoidalPosition, make_position_layer
from seqtasks.layers.recurrent import CELL_KINDS, STATE_COUNTS, ForgetGateBias, RecurrentCell, RecurrentLayer, RecurrentStack
from seqtasks.layers.seq2seq_attention import AdditiveAttention, MultiplicativeAttention
from seqtasks.layers.char_features import CharFeatures
from seqtasks.layers.crf import CRF
from seqtasks.layers.pooling import SequencePooling

__all__ = [
    "AdditiveAttention", "AttentionalDecoder", "MultiplicativeAttention",
    "CRF", "CharFeatures", "SequencePooling",
    "CELL_KINDS", "STATE_COUNTS", "FeedForward", "ForgetGateBias", "LearnedPosition", "MultiHeadAttention", "RecurrentCell", "RecurrentLayer",
    "RecurrentStack", "SinusoidalPosition", "TransformerBlock", "TransformerDecoder", "causal_attention_mask", "kv_pairs", "make_position_layer",
]
