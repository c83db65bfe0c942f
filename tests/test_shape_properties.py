"""Every loop over time in seqtasks on every batch shape a reader can produce (issue 16, requirement 1).

Shapes come from hypothesis: a batch of 1-4 sequences of 1..MAX real tokens, right-padded to the
longest plus 0-2 extra steps, with the named shapes as explicit examples: every sequence of length 1,
a batch of 1, one sequence at max length beside one of length 1, all padding but one token, max length.
Each property runs eagerly and inside a tf.function whose time axis is unknown (input_signature with
None), the graph in which the CRF's scan once broke; the whole tagger and classifier run the named
shapes eagerly and the random ones in the graph. What is checked is what a user relies on: finite
outputs of the right shape; padding never changes a real position's result (a padded batch against
each sequence alone, unpadded); the CRF's log Z and Viterbi path against brute force over every path;
beam search of width 1 against greedy decoding; a sentence longer than the tagger's --max-len gets one
tag per word.
"""
from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st

import seqtasks  # noqa: F401  (registers layers and models)
from seqtasks import decoding
from seqtasks.layers import AdditiveAttention, MultiplicativeAttention, RecurrentLayer, RecurrentStack, TransformerBlock
from seqtasks.layers.char_features import CharFeatures
from seqtasks.layers.crf import CRF
from seqtasks.layers.pooling import POOLING_KINDS, SequencePooling
from seqtasks.models.captioner import RecurrentCaptioner, TransformerCaptioner
from seqtasks.models.classifier import SequenceClassifier
from seqtasks.models.image_encoder import ImageEncoder
from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel
from seqtasks.models.seq2seq import RecurrentSeq2Seq
from seqtasks.models.tagger import SequenceTagger
from seqtasks.models.transformer_seq2seq import TransformerSeq2Seq

MAX = 5        # max length: the CRF's brute force enumerates 3 ** 5 paths per sentence
VOCAB = 13     # token ids 4.. are words; 0 is padding
FEATURES = 6
PROPERTY = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# the whole models, eagerly: the named shapes only (an eager call of a whole model costs seconds; the random
# shapes run in the graph, and every layer inside runs them eagerly in its own property above)
NAMED_ONLY = settings(PROPERTY, phases=[Phase.explicit])
MODES = ("eager", "graph")


@st.composite
def batch_shapes(draw):
    """(lengths of the real tokens per sequence, padded time), as a length-bucketed reader batches them."""
    lengths = tuple(draw(st.lists(st.integers(1, MAX), min_size=1, max_size=4)))
    return lengths, max(lengths) + draw(st.integers(0, 2))


def named_shapes(**other_arguments):
    """The shapes that broke or could break a scan, always tried first (with these other arguments)."""
    def decorate(test):
        for shape in [((1, 1, 1), 1),        # every sequence of length 1 (the CRF's empty scan)
                      ((3,), 3),             # a batch of 1
                      ((MAX, 1), MAX),       # max length beside length 1
                      ((1,), MAX),           # all padding but one token
                      ((MAX, MAX), MAX)]:    # max length
            test = example(shape=shape, seed=0, **other_arguments)(test)
        return test
    return decorate


def mask_of(lengths, time):
    return np.arange(time)[None, :] < np.asarray(lengths)[:, None]


def token_batch(rng, lengths, time, extra_axes=()):
    """Token ids >= 4 at real positions, 0 (padding) elsewhere: (batch, time, *extra_axes)."""
    ids = rng.integers(4, VOCAB, (len(lengths), time, *extra_axes)).astype("int32")
    ids[~mask_of(lengths, time)] = 0
    return ids


def float_batch(rng, lengths, time, features=FEATURES):
    """Float features; padded positions hold large garbage, which must not matter."""
    x = rng.normal(size=(len(lengths), time, features)).astype("float32")
    x[~mask_of(lengths, time)] = 50.0 * rng.normal(size=(int((~mask_of(lengths, time)).sum()), features))
    return x


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def in_mode(function, mode, signature):
    """`function` as it is, or as one tf.function for every batch and time size."""
    if mode == "eager":
        return function
    return tf.function(function, input_signature=signature)


_GRAPHS: dict = {}


def compiled(key, function, mode, signature):
    """One tf.function per (key, mode), reused across hypothesis examples (one trace for all shapes)."""
    if mode == "eager":
        return function
    if key not in _GRAPHS:
        _GRAPHS[key] = in_mode(function, mode, signature)
    return _GRAPHS[key]


def assert_close(actual, expected, atol=1e-4):
    np.testing.assert_allclose(numpy(actual), numpy(expected), rtol=1e-4, atol=atol)


def spec(*shape, dtype=tf.float32):
    return tf.TensorSpec(shape, dtype)


# --- the CRF ---------------------------------------------------------------------------------------

TAGS = 3


@pytest.fixture(scope="module")
def crf():
    layer = CRF(TAGS)
    layer.build()
    rng = np.random.default_rng(0)
    for weight in (layer.transitions, layer.start_scores, layer.end_scores):
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    return layer


def path_scores(emissions, transitions, start, end):
    """score(y) of every path y over `emissions` (length, K), by the definition."""
    scores = {}
    for path in itertools.product(range(emissions.shape[-1]), repeat=len(emissions)):
        scores[path] = (start[path[0]] + end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
                        + sum(transitions[a, b] for a, b in zip(path, path[1:])))
    return scores


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16))
@named_shapes()
def test_crf_log_partition_and_viterbi_equal_brute_force(crf, mode, shape, seed):
    lengths, time = shape
    rng = np.random.default_rng(seed)
    emissions = float_batch(rng, lengths, time, TAGS)
    mask = mask_of(lengths, time)
    tags = rng.integers(0, TAGS, mask.shape).astype("int32")

    def run(emissions, mask, tags):
        return crf.log_partition(emissions, mask), crf.negative_log_likelihood(emissions, tags, mask), \
            crf.decode(emissions, mask)

    run = compiled("crf", run, mode, [spec(None, None, TAGS), spec(None, None, dtype=tf.bool),
                                      spec(None, None, dtype=tf.int32)])
    log_z, nll, best = (numpy(x) for x in run(emissions, mask, tags))
    assert log_z.shape == nll.shape == (len(lengths),) and best.shape == (len(lengths), time)
    assert np.isfinite(log_z).all() and np.isfinite(nll).all() and (nll >= -1e-4).all()
    transitions, start, end = (numpy(w) for w in (crf.transitions, crf.start_scores, crf.end_scores))
    for i, length in enumerate(lengths):
        scores = path_scores(emissions[i, :length], transitions, start, end)
        values = np.array(list(scores.values()))
        assert log_z[i] == pytest.approx(values.max() + np.log(np.exp(values - values.max()).sum()), abs=1e-3)
        assert nll[i] == pytest.approx(log_z[i] - scores[tuple(tags[i, :length])], abs=1e-3)
        assert tuple(best[i, :length]) == max(scores, key=scores.get)
        assert 0 <= best[i].min() and best[i].max() < TAGS


# --- recurrent layers ------------------------------------------------------------------------------

STACKS = {
    "lstm-bidirectional-2": lambda: RecurrentStack("lstm", 4, 2, bidirectional=True),
    "gru": lambda: RecurrentStack("gru", 4, 1),
}


@pytest.fixture(scope="module")
def stacks():
    keras.utils.set_random_seed(1)
    built = {}
    for name, make in STACKS.items():
        stack = make()
        stack.build((None, None, FEATURES))
        built[name] = stack
    return built


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(STACKS))
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16))
@named_shapes()
def test_recurrent_padding_never_changes_outputs_or_final_states(stacks, name, mode, shape, seed):
    lengths, time = shape
    stack = stacks[name]
    rng = np.random.default_rng(seed)
    x, mask = float_batch(rng, lengths, time), mask_of(lengths, time)

    def run(x, mask):
        outputs, states = stack(x, mask=mask)
        return outputs, [t for layer in states for t in layer]

    run = compiled(("stack", name), run, mode, [spec(None, None, FEATURES), spec(None, None, dtype=tf.bool)])
    outputs, states = run(x, mask)
    width = 2 * stack.units if stack.bidirectional else stack.units
    assert tuple(outputs.shape) == (len(lengths), time, width) and np.isfinite(numpy(outputs)).all()
    for i, length in enumerate(lengths):
        alone, alone_states = run(x[i:i + 1, :length], np.ones((1, length), bool))
        assert_close(outputs[i:i + 1, :length], alone)
        for batched, single in zip(states, alone_states):
            assert_close(batched[i:i + 1], single)


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(length=st.integers(1, MAX), batch=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
@example(length=1, batch=1, seed=0)
def test_unrolled_lstm_equals_the_looped_one_at_every_length(mode, length, batch, seed):
    """The unrolled layer writes out BPTT for fixed windows (lstm_sequence); an unknown time axis takes its
    loop instead. Both give the cell's function, and the hand-written gradient equals autodiff's."""
    keras.utils.set_random_seed(2)
    unrolled, looped = RecurrentLayer("lstm", 4, unroll=True), RecurrentLayer("lstm", 4)
    for layer in (unrolled, looped):
        layer.build((None, length, FEATURES))
    looped.set_weights(unrolled.get_weights())
    x = tf.constant(np.random.default_rng(seed).normal(size=(batch, length, FEATURES)).astype("float32"))

    def loss_and_gradient(layer, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs, (h, c) = layer(x)
            loss = tf.reduce_sum(outputs ** 2) + tf.reduce_sum(h * c)
        return outputs, tape.gradient(loss, [x, *layer.trainable_weights])

    reference, reference_grads = loss_and_gradient(looped, x)
    if mode == "eager":
        outputs, grads = loss_and_gradient(unrolled, x)
    else:
        outputs, grads = tf.function(lambda x: loss_and_gradient(unrolled, x),
                                     input_signature=[spec(None, None, FEATURES)])(x)
    assert_close(outputs, reference)
    for grad, expected in zip(grads, reference_grads):
        assert_close(grad, expected, atol=1e-3)


# --- attention -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def block():
    keras.utils.set_random_seed(3)
    layer = TransformerBlock(8, 2)
    layer.build((None, None, 8))
    return layer


@pytest.mark.parametrize("mode", MODES)
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16), causal=st.booleans())
@named_shapes(causal=True)
def test_transformer_block_ignores_padded_keys(block, mode, shape, seed, causal):
    lengths, time = shape
    rng = np.random.default_rng(seed)
    x, mask = float_batch(rng, lengths, time, 8), mask_of(lengths, time)

    def run(x, mask):
        keys = tf.convert_to_tensor(mask)[:, None, :]
        if causal:
            t = tf.shape(x)[1]
            keys = keys & (tf.range(t)[None, None, :] <= tf.range(t)[None, :, None])
        return block(x, self_mask=keys)[0]

    run = compiled(("block", causal), run, mode, [spec(None, None, 8), spec(None, None, dtype=tf.bool)])
    output = run(x, mask)
    assert tuple(output.shape) == (len(lengths), time, 8) and np.isfinite(numpy(output)).all()
    for i, length in enumerate(lengths):
        assert_close(output[i:i + 1, :length], run(x[i:i + 1, :length], np.ones((1, length), bool)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["bahdanau", "luong"])
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16), queries=st.integers(0, 3))
@named_shapes(queries=0)
def test_source_attention_weights_padding_zero_and_context_unchanged(mode, kind, shape, seed, queries):
    """queries 0: one query per sentence (a decoding step); else (batch, queries, features) (teacher forcing)."""
    lengths, time = shape
    keras.utils.set_random_seed(4)
    layer = AdditiveAttention(5) if kind == "bahdanau" else MultiplicativeAttention(4)
    rng = np.random.default_rng(seed)
    memory, mask = float_batch(rng, lengths, time), mask_of(lengths, time)
    query = rng.normal(size=(len(lengths), *((queries,) if queries else ()), 4)).astype("float32")
    layer(query[:1], memory[:1], memory_mask=mask[:1])   # build

    def run(query, memory, mask):
        return layer(query, memory, memory_mask=mask)

    query_spec = spec(None, None, 4) if queries else spec(None, 4)
    run = in_mode(run, mode, [query_spec, spec(None, None, FEATURES), spec(None, None, dtype=tf.bool)])
    context, weights = (numpy(t) for t in run(query, memory, mask))
    assert np.isfinite(context).all() and context.shape == (*query.shape[:-1], FEATURES)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    padded = np.broadcast_to(~mask[:, None, :] if queries else ~mask, weights.shape)
    assert (weights[padded] == 0).all()
    for i, length in enumerate(lengths):
        alone, alone_weights = run(query[i:i + 1], memory[i:i + 1, :length], mask[i:i + 1, :length])
        assert_close(context[i:i + 1], alone)
        assert_close(weights[i:i + 1, ..., :length], alone_weights)


# --- character features and pooling ----------------------------------------------------------------

CHARS = 4  # characters of the longest word


@pytest.fixture(scope="module")
def char_layers():
    keras.utils.set_random_seed(5)
    layers = {kind: CharFeatures(kind, 9, char_dim=4, units=3) for kind in ("cnn", "lstm")}
    for layer in layers.values():
        layer.build((None, None, None))
    return layers


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["cnn", "lstm"])
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16), chars=st.integers(1, CHARS))
@named_shapes(chars=1)
def test_char_features_of_a_word_ignore_padding(char_layers, mode, kind, shape, seed, chars):
    """Words of 1..chars characters (chars 1: every word one character); padded words get zeros."""
    lengths, time = shape
    layer = char_layers[kind]
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 9, (len(lengths), time, chars)).astype("int32")
    word_lengths = rng.integers(1, chars + 1, (len(lengths), time))
    ids[np.arange(chars)[None, None, :] >= word_lengths[..., None]] = 0
    ids[~mask_of(lengths, time)] = 0
    run = compiled(("chars", kind), lambda ids: layer(ids), mode, [spec(None, None, None, dtype=tf.int32)])
    features = numpy(run(ids))
    assert features.shape == (len(lengths), time, layer.output_dim) and np.isfinite(features).all()
    assert (features[~mask_of(lengths, time)] == 0).all()
    for i, length in enumerate(lengths):
        for t in range(length):
            word = ids[i:i + 1, t:t + 1, :word_lengths[i, t]]
            assert_close(features[i, t], numpy(run(word))[0, 0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", POOLING_KINDS)
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16))
@named_shapes()
def test_pooling_ignores_padding(mode, kind, shape, seed):
    lengths, time = shape
    keras.utils.set_random_seed(6)
    pooling = SequencePooling(kind, backward_features=2 if kind == "last" else 0, attention_units=4)
    pooling.build((None, None, FEATURES))
    rng = np.random.default_rng(seed)
    states, mask = float_batch(rng, lengths, time), mask_of(lengths, time)
    run = in_mode(lambda s, m: pooling(s, m), mode, [spec(None, None, FEATURES), spec(None, None, dtype=tf.bool)])
    pooled = run(states, mask)
    assert tuple(pooled.shape) == (len(lengths), FEATURES) and np.isfinite(numpy(pooled)).all()
    for i, length in enumerate(lengths):
        assert_close(pooled[i:i + 1], run(states[i:i + 1, :length], np.ones((1, length), bool)))


# --- the models' forward passes --------------------------------------------------------------------

ENCODERS = {
    "bilstm-crf-cnn-chars": dict(crf=True, encoder=dict(arch="lstm", char_features="cnn")),
    "gru-lstm-chars-pieces": dict(crf=False, encoder=dict(arch="gru", char_features="lstm", token_pieces=True)),
    "transformer-crf": dict(crf=True, encoder=dict(arch="transformer", heads=2)),
}


def encoder_inputs(rng, lengths, time, options):
    tokens = token_batch(rng, lengths, time, (2,) if options.get("token_pieces") else ())
    if options.get("token_pieces"):
        tokens[..., 1][rng.random(tokens.shape[:2]) < 0.5] = 0  # words of one piece or two
    inputs = {"tokens": tokens}
    if options.get("char_features", "none") != "none":
        chars = rng.integers(1, 9, (len(lengths), time, 3)).astype("int32")
        chars[~mask_of(lengths, time)] = 0
        inputs["chars"] = chars
    return inputs


def encoder_signature(options):
    signature = {"tokens": spec(None, None, None, dtype=tf.int32) if options.get("token_pieces")
                 else spec(None, None, dtype=tf.int32)}
    if options.get("char_features", "none") != "none":
        signature["chars"] = spec(None, None, None, dtype=tf.int32)
    return signature


def encoder_options(options):
    return dict(vocab_size=VOCAB, units=8, num_layers=2, max_length=16, char_vocab_size=9, char_dim=4,
                char_units=3, **options)


@pytest.fixture(scope="module")
def taggers():
    keras.utils.set_random_seed(7)
    built = {}
    for name, args in ENCODERS.items():
        model = SequenceTagger(4, crf=args["crf"], encoder=encoder_options(args["encoder"]))
        model(encoder_inputs(np.random.default_rng(0), (2,), 2, args["encoder"]))
        built[name] = model
    return built


def slice_inputs(inputs, i, length):
    return {key: value[i:i + 1, :length] for key, value in inputs.items()}


def tagger_ignores_padding(taggers, mode, name, shape, seed):
    lengths, time = shape
    model, options = taggers[name], ENCODERS[name]["encoder"]
    inputs = encoder_inputs(np.random.default_rng(seed), lengths, time, options)
    run = compiled(("tagger", name), lambda x: (model(x), model.tag_ids(x)), mode, [encoder_signature(options)])
    emissions, tags = (numpy(t) for t in run(inputs))
    assert emissions.shape == (len(lengths), time, 4) and np.isfinite(emissions).all()
    assert tags.shape == (len(lengths), time) and 0 <= tags.min() and tags.max() < 4
    for i, length in enumerate(lengths):
        alone_emissions, alone_tags = run(slice_inputs(inputs, i, length))
        assert_close(emissions[i:i + 1, :length], alone_emissions)
        np.testing.assert_array_equal(tags[i:i + 1, :length], numpy(alone_tags))


@pytest.mark.parametrize("name", list(ENCODERS))
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16))
@named_shapes()
def test_tagger_emissions_and_tags_ignore_padding(taggers, name, shape, seed):
    tagger_ignores_padding(taggers, "graph", name, shape, seed)


@pytest.mark.parametrize("name", list(ENCODERS))
@NAMED_ONLY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16))
@named_shapes()
def test_tagger_emissions_and_tags_ignore_padding_eagerly(taggers, name, shape, seed):
    tagger_ignores_padding(taggers, "eager", name, shape, seed)


@pytest.fixture(scope="module")
def classifiers():
    keras.utils.set_random_seed(8)
    built = {}
    for pooling, (name, args) in zip(["last", "attention", "mean"], ENCODERS.items()):
        model = SequenceClassifier(3, pooling=pooling, encoder=encoder_options(args["encoder"]))
        model(encoder_inputs(np.random.default_rng(0), (2,), 2, args["encoder"]))
        built[name] = model
    return built


def classifier_ignores_padding(classifiers, mode, name, shape, seed):
    lengths, time = shape
    model, options = classifiers[name], ENCODERS[name]["encoder"]
    inputs = encoder_inputs(np.random.default_rng(seed), lengths, time, options)
    run = compiled(("classifier", name), lambda x: model(x), mode, [encoder_signature(options)])
    logits = run(inputs)
    assert tuple(logits.shape) == (len(lengths), 3) and np.isfinite(numpy(logits)).all()
    for i, length in enumerate(lengths):
        assert_close(logits[i:i + 1], run(slice_inputs(inputs, i, length)))


@pytest.mark.parametrize("name", list(ENCODERS))
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16))
@named_shapes()
def test_classifier_logits_ignore_padding(classifiers, name, shape, seed):
    classifier_ignores_padding(classifiers, "graph", name, shape, seed)


@pytest.mark.parametrize("name", list(ENCODERS))
@NAMED_ONLY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16))
@named_shapes()
def test_classifier_logits_ignore_padding_eagerly(classifiers, name, shape, seed):
    classifier_ignores_padding(classifiers, "eager", name, shape, seed)


TRANSLATORS = {
    "lstm-bahdanau": lambda: RecurrentSeq2Seq(VOCAB, VOCAB, "lstm", 8, 1, attention="bahdanau"),
    "gru-luong-input-feeding": lambda: RecurrentSeq2Seq(VOCAB, VOCAB, "gru", 8, 2, attention="luong",
                                                        input_feeding=True, bidirectional=False),
    "transformer": lambda: TransformerSeq2Seq(VOCAB, VOCAB, 8, 2, 1, 1, dropout=0.0),
}


@pytest.fixture(scope="module")
def translators():
    keras.utils.set_random_seed(9)
    built = {}
    for name, make in TRANSLATORS.items():
        model = make()
        model.build(((None, None), (None, None)))
        built[name] = model
    return built


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(TRANSLATORS))
@PROPERTY
@given(source=batch_shapes(), target_length=st.integers(1, MAX), seed=st.integers(0, 2 ** 16))
@example(source=((1, 1), 1), target_length=1, seed=0)
@example(source=((MAX, 1), MAX), target_length=MAX, seed=0)
@example(source=((1,), MAX), target_length=1, seed=0)
def test_translation_logits_ignore_source_padding_and_later_targets(translators, mode, name, source, target_length,
                                                                   seed):
    lengths, time = source
    model = translators[name]
    rng = np.random.default_rng(seed)
    source_ids = token_batch(rng, lengths, time)
    target_ids = rng.integers(4, VOCAB, (len(lengths), target_length)).astype("int32")
    run = compiled(("translator", name), lambda s, t: model((s, t)), mode,
                   [spec(None, None, dtype=tf.int32), spec(None, None, dtype=tf.int32)])
    logits = run(source_ids, target_ids)
    assert tuple(logits.shape) == (len(lengths), target_length, VOCAB) and np.isfinite(numpy(logits)).all()
    for i, length in enumerate(lengths):
        assert_close(logits[i:i + 1], run(source_ids[i:i + 1, :length], target_ids[i:i + 1]))
        # teacher forcing is causal: the first target position alone gives the same logits
        assert_close(logits[i:i + 1, :1], run(source_ids[i:i + 1, :length], target_ids[i:i + 1, :1]))


CAPTIONERS = {
    "attention": lambda encoder: RecurrentCaptioner(VOCAB, encoder, units=8, attention=True, initial_state="mean"),
    "transformer": lambda encoder: TransformerCaptioner(VOCAB, encoder, d_model=8, heads=2, num_layers=1,
                                                        max_length=16),
}
PIXELS = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")


@pytest.fixture(scope="module")
def captioners():
    keras.utils.set_random_seed(10)
    built = {}
    for name, make in CAPTIONERS.items():
        model = make(ImageEncoder("cnn", 16, 8, cnn_filters=4, cnn_blocks=2))
        model.build()
        built[name] = model
    return built


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(CAPTIONERS))
@PROPERTY
@given(shape=batch_shapes(), seed=st.integers(0, 2 ** 16))
@named_shapes()
def test_caption_logits_of_a_caption_ignore_padding_after_it(captioners, mode, name, shape, seed):
    lengths, time = shape
    model = captioners[name]
    ids = token_batch(np.random.default_rng(seed), lengths, time)
    pixels = PIXELS[:len(lengths)]
    run = compiled(("captioner", name), lambda p, ids: model((p, ids)), mode,
                   [spec(None, 16, 16, 3), spec(None, None, dtype=tf.int32)])
    logits = run(pixels, ids)
    assert tuple(logits.shape) == (len(lengths), time, VOCAB) and np.isfinite(numpy(logits)).all()
    for i, length in enumerate(lengths):
        assert_close(logits[i:i + 1, :length], run(pixels[i:i + 1], ids[i:i + 1, :length]))


# --- decoding: greedy, beam search, sampling -------------------------------------------------------

@pytest.fixture(scope="module")
def language_models():
    keras.utils.set_random_seed(11)
    models = {"lstm": RecurrentLanguageModel(VOCAB, "lstm", units=8, num_layers=2),
              "transformer": TransformerLanguageModel(VOCAB, d_model=8, heads=2, num_layers=1, max_length=12)}
    for model in models.values():
        model(np.zeros((1, 1), "int32"))
    return models


@st.composite
def prompts(draw):
    lengths = draw(st.lists(st.integers(1, MAX), min_size=1, max_size=3))
    return [draw(st.lists(st.integers(4, VOCAB - 1), min_size=n, max_size=n)) for n in lengths]


@pytest.mark.parametrize("name", ["lstm", "transformer"])
@PROPERTY
@given(prompt_ids=prompts(), new_tokens=st.integers(1, 6))
@example(prompt_ids=[[4]], new_tokens=1)
@example(prompt_ids=[[4], [5, 6, 7, 8, 9]], new_tokens=6)
def test_language_model_greedy_is_argmax_and_beam_1_is_greedy(language_models, name, prompt_ids, new_tokens):
    model = language_models[name]
    config = decoding.GenerationConfig(max_new_tokens=new_tokens, temperature=0.0, xla=False)
    greedy = decoding.generate(model, prompt_ids, config)
    beam = decoding.generate(model, prompt_ids, decoding.GenerationConfig(max_new_tokens=new_tokens, beam_width=1,
                                                                          top_k=1, xla=False))
    assert beam == greedy
    for prompt, (tokens,) in zip(prompt_ids, greedy):
        assert len(tokens) == new_tokens
        expected = list(prompt)
        for _ in range(new_tokens):
            expected.append(int(np.argmax(numpy(model(np.array([expected], "int32")))[0, -1])))
        assert tokens == expected[len(prompt):]


@pytest.mark.parametrize("name", ["lstm", "transformer"])
@PROPERTY
@given(prompt_ids=prompts(), new_tokens=st.integers(1, 12), seed=st.integers(0, 100))
@example(prompt_ids=[[4, 5, 6, 7, 8]], new_tokens=12, seed=0)   # past the transformer's 12 positions
def test_sampling_gives_max_new_tokens_in_the_vocabulary_and_beam_fits_or_refuses(language_models, name, prompt_ids,
                                                                                   new_tokens, seed):
    model = language_models[name]
    config = decoding.GenerationConfig(max_new_tokens=new_tokens, top_k=5, seed=seed, num_return_sequences=2,
                                       xla=False)
    for samples in decoding.generate(model, prompt_ids, config):
        assert [len(s) for s in samples] == [new_tokens, new_tokens]
        assert all(0 <= t < VOCAB for s in samples for t in s)
    beam = decoding.GenerationConfig(max_new_tokens=new_tokens, beam_width=2)
    if max(map(len, prompt_ids)) + new_tokens <= model.capacity(10 ** 6):
        assert all(len(b) == 1 and len(b[0]) == new_tokens for b in decoding.generate(model, prompt_ids, beam))
    else:
        with pytest.raises(decoding.GenerationError):
            decoding.generate(model, prompt_ids, beam)


@pytest.mark.parametrize("name", ["lstm-bahdanau", "gru-luong-input-feeding", "transformer"])
@PROPERTY
@given(source=batch_shapes(), new_tokens=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
@example(source=((1, 1), 1), new_tokens=1, seed=0)
@example(source=((MAX, 1), MAX + 2), new_tokens=5, seed=0)
def test_translation_greedy_is_argmax_and_beam_1_is_greedy(translators, name, source, new_tokens, seed):
    """Decoding with a padded source gives each sentence what it gets alone."""
    lengths, time = source
    model = translators[name]
    source_ids = token_batch(np.random.default_rng(seed), lengths, time)
    context = tuple(numpy(t) for t in model.encode(source_ids))
    bos = [[2]] * len(lengths)
    greedy = decoding.generate(model, bos, decoding.GenerationConfig(max_new_tokens=new_tokens, temperature=0.0),
                               context)
    beam = decoding.generate(model, bos, decoding.GenerationConfig(max_new_tokens=new_tokens, beam_width=1, top_k=1),
                             context)
    assert beam == greedy
    for i, length in enumerate(lengths):
        expected = [2]
        for _ in range(new_tokens):
            logits = numpy(model((source_ids[i:i + 1, :length], np.array([expected], "int32"))))
            expected.append(int(np.argmax(logits[0, -1])))
        assert greedy[i][0] == expected[1:]


# --- a sentence longer than --max-len is tagged in pieces ------------------------------------------

@pytest.fixture(scope="module")
def short_tagger(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pieces")
    rows = "".join(f"w{i} {'B-X' if i % 3 == 0 else 'O'}\n" + ("\n" if i % 4 == 3 else "") for i in range(40))
    (folder / "train.conll").write_text(rows)
    return seqtasks.train("tag", out=folder / "run", verbose=0, data=str(folder / "train.conll"), max_len=3,
                          units=8, layers=1, epochs=1, steps_per_epoch=2, batch_size=4, char_units=4, char_dim=4,
                          crf=True, precision="fp32", warmup_steps=1)


@PROPERTY
@given(words=st.lists(st.sampled_from(["w1", "w3", "unseen", "é", "w9"]), min_size=1, max_size=11))
@example(words=["w1"] * 11)
def test_sentences_longer_than_max_len_get_a_tag_per_word(short_tagger, words):
    (result,) = list(short_tagger.predict([" ".join(words)]))
    assert result["tokens"] == words and len(result["tags"]) == len(words)
    assert set(result["tags"]) <= {"B-X", "I-X", "O"}
    pretokenized = list(short_tagger.predict(words + ["", "w1"], pretokenized=True))
    assert [r["token"] for r in pretokenized if "token" in r] == words + ["w1"]
