"""seqtasks' Keras layers: each registered for saving, each documented with the equation it computes."""
from seqtasks.layers.attention import FeedForward, MultiHeadAttention, TransformerBlock, causal_attention_mask
from seqtasks.layers.position import LearnedPosition, SinusoidalPosition, make_position_layer
from seqtasks.layers.recurrent import CELL_KINDS, RecurrentCell, RecurrentLayer, RecurrentStack

__all__ = [
    "CELL_KINDS", "FeedForward", "LearnedPosition", "MultiHeadAttention", "RecurrentCell", "RecurrentLayer",
    "RecurrentStack", "SinusoidalPosition", "TransformerBlock", "causal_attention_mask", "make_position_layer",
]
