"""The exported graph of a text-writing run (lm, generate, translate, caption): strings in, text out.

    GenerationServing(model, conditioning, beam_width, ...)   a tf.Module with two signatures:
        serving_default(inputs)  what `seqtasks predict RUN` prints for each input, with the task's
                                 defaults: greedy (or the run's beam search), its max_new_tokens
        generate(inputs, max_new_tokens, temperature, top_k, top_p, seed)
                                 greedy (temperature 0 or top_k 1) or seeded sampling, per request:
                                 the text `seqtasks sample` prints for the same settings and seed

An input is a string: a prompt (a language model continues it; a generate run completes it), a source
sentence, or an image file's bytes (JPEG, PNG, GIF, BMP) for a captioner. The task's Conditioning
(seqtasks.generation) says how an input reaches the engine in Python; `graph_conditioning` gives the
same steps in ops: prompt ids (the tokenizer in the graph), the context (the encoder run on the
source or the image), the stop ids. Each input is decoded alone (tf.map_fn), as `sample` decodes one
prompt; beam search is the engine's own compiled search (Generator.beam_graph).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from seqtasks import decoding
from seqtasks.captioning import Captioner
from seqtasks.generation import TextPrompts
from seqtasks.graph_text import graph_tokenizer
from seqtasks.image_pipeline import resize_image
from seqtasks.tokenizers import BOS_ID, EOS_ID
from seqtasks.translator import Translator

SCALARS = {"max_new_tokens": tf.int32, "temperature": tf.float32, "top_k": tf.int32, "top_p": tf.float32,
           "seed": tf.int64}


class TextInputs(tf.Module):
    """TextPrompts in ops: the prompt's ids + the suffix (an empty prompt: EOS); no context."""

    input_name = "texts"

    def __init__(self, conditioning: TextPrompts):
        super().__init__()
        self.tokenizer = graph_tokenizer(conditioning.tokenizer)
        self.suffix = tuple(conditioning.suffix)

    def __call__(self, text):
        ids = self.tokenizer.encode(text[None]).flat_values
        ids = tf.cond(tf.strings.length(text) > 0, lambda: ids, lambda: tf.zeros((0,), tf.int32))  # only "" is no prompt
        ids = tf.concat([ids, tf.constant(self.suffix, tf.int32, (len(self.suffix),))], 0)
        ids = tf.cond(tf.size(ids) > 0, lambda: ids, lambda: tf.constant([EOS_ID], tf.int32))
        return ids[None], None, tf.constant(False)

    def example_context(self):
        return None


class SourceInputs(tf.Module):
    """Translator in ops: [BOS] and the encoder's context of the source ids (+ EOS, cut for learned
    positions); a blank sentence is translated as ""."""

    input_name = "texts"

    def __init__(self, conditioning: Translator):
        super().__init__()
        self.tokenizer = graph_tokenizer(conditioning.vocab.source)
        self.model, self.max_source_length = conditioning.model, conditioning.max_source_length

    def __call__(self, text):
        stripped = tf.strings.strip(text)
        ids = self.tokenizer.encode(stripped[None]).flat_values
        if self.max_source_length:
            ids = ids[:self.max_source_length - 1]
        source = tf.concat([ids, [EOS_ID]], 0)[None]
        return tf.constant([[BOS_ID]], tf.int32), tuple(self.model.encode(source)), tf.equal(stripped, "")

    def example_context(self):
        return tuple(self.model.encode(tf.constant([[4, EOS_ID]], tf.int32)))


class ImageInputs(tf.Module):
    """Captioner in ops: the image file's bytes decoded and resized as captioning.read_images does,
    [BOS], and the encoder's grid as context."""

    input_name = "images"

    def __init__(self, conditioning: Captioner):
        super().__init__()
        self.model, self.size = conditioning.model, conditioning.image_size

    def pixels(self, data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return tf.cast(resize_image(image, self.size), tf.float32)[None]

    def __call__(self, data):
        grid = self.model.encode(self.pixels(data), training=False)
        return tf.constant([[BOS_ID]], tf.int32), (grid,), tf.constant(False)

    def example_context(self):
        return (self.model.encode(tf.zeros((1, self.size, self.size, 3)), training=False),)


def graph_conditioning(conditioning) -> TextInputs | SourceInputs | ImageInputs:
    for kind, inputs in ((TextPrompts, TextInputs), (Translator, SourceInputs), (Captioner, ImageInputs)):
        if isinstance(conditioning, kind):
            return inputs(conditioning)
    raise TypeError(f"no exported inputs for {type(conditioning).__name__}")


class GenerationServing(tf.Module):
    """See the module docstring. `defaults`: the task's predict options (max_new_tokens, beam_width,
    length_penalty); `capacity`: the positions the model's state holds (None: no limit)."""

    def __init__(self, model, conditioning, defaults: dict[str, Any]):
        super().__init__()
        self.model, self.inputs = model, graph_conditioning(conditioning)
        # every weight, tracked by the module itself: a captioner's image encoder is not always reached
        # through the Keras model's own tracking
        self.weights = [weight.value for weight in model.weights]
        self.output_tokenizer = graph_tokenizer(conditioning.tokenizer)
        self.stop_ids = tuple(conditioning.stop_ids)
        self.max_new_tokens = int(defaults.get("max_new_tokens", decoding.GenerationConfig().max_new_tokens))
        limit = int(model.capacity(10 ** 9))
        self.capacity = None if limit >= 10 ** 9 else limit
        self.beam_width = int(defaults.get("beam_width", 1))
        self.beam = None
        if self.beam_width > 1:
            config = decoding.GenerationConfig(max_new_tokens=self.max_new_tokens, beam_width=self.beam_width,
                                               length_penalty=float(defaults.get("length_penalty", 1.0)),
                                               stop_ids=self.stop_ids, xla=False)
            specs = decoding.context_specs(self.inputs.example_context())
            self.beam = decoding.generator_for(model).beam_graph(config, 1, specs)
        name = self.inputs.input_name
        self.serving_default = tf.function(self._predict, input_signature=[tf.TensorSpec([None], tf.string, name)])
        self.generate = tf.function(self._generate, input_signature=[
            tf.TensorSpec([None], tf.string, name), *(tf.TensorSpec([], dtype, key) for key, dtype in SCALARS.items())])

    def signatures(self) -> dict[str, Any]:
        return {"serving_default": self.serving_default, "generate": self.generate}

    def _decode(self, item, max_new_tokens, temperature, top_k, top_p, seed):
        prompt, context, blank = self.inputs(item)
        ids = decoding.sample_ids(self.model, prompt, max_new_tokens, temperature, top_k, top_p, seed, self.stop_ids,
                         context, self.capacity)
        text = self.output_tokenizer.decode(tf.RaggedTensor.from_tensor(ids[None]))[0]
        return tf.where(blank, "", text)

    def _beam_decode(self, item):
        prompt, context, blank = self.inputs(item)
        tokens, lengths, _ = self.beam(prompt, *(context or ()))
        ids = tokens[0, 0, :lengths[0, 0]]
        stops = tf.reduce_any(ids[:, None] == tf.constant(self.stop_ids, tf.int32)[None], axis=1)
        first_stop = tf.reduce_min(tf.concat([tf.where(stops)[:, 0], [tf.size(ids, tf.int64)]], 0))
        text = self.output_tokenizer.decode(tf.RaggedTensor.from_tensor(ids[None, :first_stop]))[0]
        return tf.where(blank, "", text)

    def _predict(self, inputs):
        if self.beam is not None:
            outputs = tf.map_fn(self._beam_decode, inputs, fn_output_signature=tf.string)
        else:
            outputs = tf.map_fn(lambda item: self._decode(item, self.max_new_tokens, 0.0, 0, 1.0, tf.constant(0, tf.int64)),
                                inputs, fn_output_signature=tf.string)
        return {"outputs": outputs}

    def _generate(self, inputs, max_new_tokens, temperature, top_k, top_p, seed):
        tf.debugging.assert_greater_equal(temperature, 0.0, "temperature must be >= 0 (0 = greedy)")
        tf.debugging.assert_greater_equal(top_k, 0, "top_k must be >= 0 (0 = off)")
        tf.debugging.assert_greater(top_p, 0.0, "top_p must be in (0, 1]")
        tf.debugging.assert_less_equal(top_p, 1.0, "top_p must be in (0, 1]")
        outputs = tf.map_fn(lambda item: self._decode(item, max_new_tokens, temperature, top_k, top_p, seed),
                            inputs, fn_output_signature=tf.string)
        return {"outputs": outputs}
