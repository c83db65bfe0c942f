"""Beam search: the Generator's beam_search() (see the package docstring for the scoring and stopping rules)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from seqtasks.decoding.base import GeneratorBase, round_up_state_size, static_config, write_tokens
from seqtasks.decoding.config import GenerationConfig, GenerationError
from seqtasks.decoding.filters import constrain_logits, is_stop
from seqtasks.decoding.inputs import Context, context_specs, context_tensors, prefill_decoder
from seqtasks.decoding.stops import strip_stops


class BeamSearch(GeneratorBase):
    """The Generator's beam search."""

    def beam_search(self, prompts: np.ndarray, config: GenerationConfig, context: Context | None = None
                    ) -> tuple[list[list[list[int]]], list[list[float]]]:
        """The num_return_sequences best beams (best first) for equal-length prompts (batch, time).

        Runs with any beam_width, 1 included (which is greedy decoding). `context` has one row per prompt.
        """
        prompts = np.asarray(prompts, np.int32)
        context = context_tensors(context, len(prompts))
        batch, prompt_length = prompts.shape
        new_tokens, width = config.max_new_tokens, config.beam_width
        count = config.num_return_sequences if config.beam else 1
        if new_tokens == 0:
            return [[[]] * count] * batch, [[0.0] * count] * batch
        self._prepare(prompts)
        needed = prompt_length + new_tokens
        capacity = self.decoder.capacity(round_up_state_size(needed))
        if needed > capacity:
            raise GenerationError(
                f"beam search needs prompt + max_new_tokens = {needed} positions but the model holds {capacity}",
                "beam search", "shorten the prompt or max_new_tokens, or use sampling/greedy (they slide a window)")
        static = static_config(config)
        specs = context_specs(context)
        search = self._compiled(("beam", static, capacity, specs), lambda: self._beam_function(static, capacity, specs))
        sequences, lengths, scores = (t.numpy() for t in search(tf.constant(prompts), *(context or ())))
        outputs, output_scores = [], []
        for b in range(batch):
            outputs.append([strip_stops(sequences[b, j, :lengths[b, j]], config.stop_ids) for j in range(count)])
            output_scores.append([float(scores[b, j]) for j in range(count)])
        return outputs, output_scores

    def beam_graph(self, config: GenerationConfig, prompt_length: int, specs: tuple | None = None):
        """beam_search()'s compiled search for prompts of `prompt_length` tokens, as a tf.function
        (prompts (batch, time), *context) -> (tokens (batch, width, max_new_tokens), lengths (batch, width),
        scores (batch, width)), best first, stop ids included in the lengths: an exported graph calls it."""
        needed = prompt_length + config.max_new_tokens
        capacity = self.decoder.capacity(round_up_state_size(needed))
        if needed > capacity:
            raise GenerationError(f"beam search needs {needed} positions but the model holds {capacity}",
                                  "beam search", "lower max_new_tokens")
        static = static_config(config)
        return self._compiled(("beam", static, capacity, specs), lambda: self._beam_function(static, capacity, specs))

    def _beam_function(self, config: GenerationConfig, state_size: int, specs: tuple | None):
        decoder = self.decoder
        width, new_tokens = config.beam_width, config.max_new_tokens
        stop_ids, penalty = config.stop_ids, config.length_penalty

        def normalize(log_p, length):
            return log_p / tf.pow(tf.cast(length, tf.float32), penalty)

        def search(prompts, *context):
            batch, prompt_length = tf.shape(prompts)[0], tf.shape(prompts)[1]
            rows = batch * width
            # prefill once per prompt; repeating the state (context included) gives row i -> rows i*W..i*W+W-1
            logits, state = prefill_decoder(decoder, prompts, state_size, context, specs)
            vocab = logits.shape[-1]
            if vocab is None:
                raise ValueError("beam search needs the decoder's vocabulary size to be static")
            candidates = min(width * (1 + len(stop_ids)), width * vocab)
            state = tuple(tf.repeat(s, width, axis=0) for s in state)
            logits = tf.repeat(tf.cast(logits, tf.float32), width, axis=0)
            history = tf.repeat(tf.concat([prompts, tf.zeros((batch, new_tokens), tf.int32)], axis=1), width, axis=0)
            # only the first beam is live at the start, so the first step does not pick duplicates
            first = tf.concat([tf.zeros((1,)), tf.fill((width - 1,), -np.inf)], axis=0)
            alive_log_p = tf.tile(first[None], [batch, 1])
            finished_tokens = tf.zeros((batch, width, new_tokens), tf.int32)
            finished_scores = tf.fill((batch, width), -np.inf)
            finished_lengths = tf.zeros((batch, width), tf.int32)
            done = tf.zeros((batch,), tf.bool)
            beam_offsets = (tf.range(batch) * width)[:, None]
            positions = tf.range(new_tokens)

            def condition(i, logits, state, history, alive_log_p, f_tokens, f_scores, f_lengths, done):
                return (i < new_tokens) & ~tf.reduce_all(done)

            def body(i, logits, state, history, alive_log_p, f_tokens, f_scores, f_lengths, done):
                x = constrain_logits(logits, history, prompt_length + i, i, config)
                log_p = tf.nn.log_softmax(x, axis=-1)
                total = tf.reshape(alive_log_p, (rows, 1)) + log_p
                top_scores, top_indices = tf.math.top_k(tf.reshape(total, (batch, width * vocab)), candidates)
                parents = top_indices // vocab + beam_offsets  # rows of history / state, (batch, candidates)
                tokens = top_indices % vocab
                generated = tf.gather(history[:, prompt_length:], parents)  # (batch, candidates, new_tokens)
                candidate_tokens = tf.where(positions == i, tokens[..., None], generated)
                stopped = is_stop(tokens, stop_ids)
                length = i + 1
                # finished pool: candidates ending in a stop id among the `width` best of this step
                eligible = stopped & (tf.range(candidates) < width)[None] & ~done[:, None] & (top_scores > -np.inf)
                new_scores = tf.where(eligible, normalize(top_scores, length), -np.inf)
                pool_scores = tf.concat([f_scores, new_scores], axis=1)
                pool_tokens = tf.concat([f_tokens, candidate_tokens], axis=1)
                pool_lengths = tf.concat([f_lengths, tf.fill(tf.shape(tokens), length)], axis=1)
                f_scores, keep = tf.math.top_k(pool_scores, width)
                f_tokens = tf.gather(pool_tokens, keep, batch_dims=1)
                f_lengths = tf.gather(pool_lengths, keep, batch_dims=1)
                # live beams: the `width` best candidates that did not stop
                alive_log_p, keep = tf.math.top_k(tf.where(stopped, -np.inf, top_scores), width)
                chosen_rows = tf.reshape(tf.gather(parents, keep, batch_dims=1), (rows,))
                chosen_tokens = tf.reshape(tf.gather(tokens, keep, batch_dims=1), (rows,))
                history = write_tokens(tf.gather(history, chosen_rows), prompt_length + i, chosen_tokens)
                state = tuple(tf.gather(s, chosen_rows) for s in state)
                worst_finished = f_scores[:, -1]
                done = done | ((worst_finished > -np.inf) & (worst_finished >= normalize(alive_log_p[:, 0], length)))
                logits, state = decoder.step(chosen_tokens, state, prompt_length + i)
                return (i + 1, tf.cast(logits, tf.float32), tuple(state), history, alive_log_p,
                        f_tokens, f_scores, f_lengths, done)

            loop = tf.while_loop(condition, body, (tf.constant(0), logits, state, history, alive_log_p,
                                                   finished_tokens, finished_scores, finished_lengths, done))
            steps, _, _, history, alive_log_p, f_tokens, f_scores, f_lengths, done = loop
            # prompts still searching at max_new_tokens: their live beams are complete hypotheses too
            live_ok = ~done[:, None] & (alive_log_p > -np.inf)
            live_scores = tf.where(live_ok, normalize(alive_log_p, steps), -np.inf)
            live_tokens = tf.reshape(history[:, prompt_length:], (batch, width, new_tokens))
            pool_scores = tf.concat([f_scores, live_scores], axis=1)
            f_scores, keep = tf.math.top_k(pool_scores, width)
            f_tokens = tf.gather(tf.concat([f_tokens, live_tokens], axis=1), keep, batch_dims=1)
            f_lengths = tf.gather(tf.concat([f_lengths, tf.fill((batch, width), steps)], axis=1), keep, batch_dims=1)
            return f_tokens, f_lengths, f_scores

        return tf.function(search, input_signature=(tf.TensorSpec((None, None), tf.int32), *(specs or ())),
                           jit_compile=config.uses_xla(beam=True, conditional=specs is not None))
