"""Whole models composed from seqtasks.layers; each is a registered keras.Model."""
