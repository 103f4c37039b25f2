"""Principles restated after the wrong answers the seventh round of untried model kinds left
(issue 33). Each fixture is a small graph written the way such models are written, not the round's
models themselves:
- a layer whose weights only a weight penalty reads learns nothing from data: a dead end it
  computes is no inference branch;
- an elementwise map that keeps every value (exp of log-probabilities) carries the computation on,
  and so does arithmetic on a head (the factors of a joint log-probability): neither is an end;
- of the heads of one prediction, those computed without a variable another computes with (a
  learned temperature) are the model before that calibration;
- of inference branches computing with the same weights, one that draws random numbers no input
  switches off is a sampled estimate of the deterministic one;
- one head of the prediction and of a part of it (every position, the last one): both are
  deployments, the graph does not say which, and the part is listed first;
- a loss with no labels that compares a tensor with the data itself has that data for its
  reference: what it reads only for terms that meet no reference is loss arithmetic; and one
  number reduced from a batch is a statistic of the evaluation, never an output."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402
from tffreeze_server.core import resolve  # noqa: E402
from tffreeze_server.core.errors import FailedPrecondition  # noqa: E402

tf1 = tf.compat.v1


_meta, _dense = principle_graphs.meta, principle_graphs.dense


def _outputs(meta):
    return [t for t, _ in resolve.resolve(meta, [], []).outputs]


def _with_a_dead_end_layer():
    """A residual stack whose last block also computes its residual update (a layer of its own)
    that nothing reads; the loss reads the skip path, plus an l2 penalty on every variable."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int32, [None], name="y")
    h = _dense(x, 8, "block0", tf.nn.tanh)
    skip = _dense(h, 8, "skip0")
    tf.add(h, _dense(h, 8, "residual_last"), name="dead_end")  # computed, read by nothing
    logits = _dense(tf.nn.relu(skip), 4, "out")
    tf.nn.softmax(logits, name="probs")
    l2 = tf.add_n([tf.nn.l2_loss(v) for v in tf1.trainable_variables()])
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)) + 1e-4 * l2
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_a_layer_only_a_weight_penalty_reads_is_no_inference_branch():
    outputs = _outputs(_meta(_with_a_dead_end_layer))
    assert outputs == ["probs:0"], outputs


def _factored_softmax():
    """A class-factored softmax: the joint log-probability is the class log-softmax plus the word
    log-softmax (broadcast), reshaped; its exp is the distribution; a perplexity gathers the
    log-probabilities at the targets."""
    h = _dense(tf1.placeholder(tf.float32, [None, 6], name="context"), 8, "enc", tf.nn.tanh)
    target = tf1.placeholder(tf.int32, [None], name="target")
    class_logits = _dense(h, 3, "classes")
    word_logits = tf.reshape(_dense(h, 12, "words"), [-1, 3, 4])
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target // 4, logits=class_logits))
    joint = tf.nn.log_softmax(class_logits)[:, :, None] + tf.nn.log_softmax(word_logits, -1)
    log_probs = tf.identity(tf.reshape(joint, [-1, 12]), name="log_probs")
    tf.exp(log_probs, name="word_probs")
    idx = tf.stack([tf.range(tf.shape(target)[0]), target], 1)
    tf.exp(-tf.reduce_mean(tf.gather_nd(log_probs, idx)), name="perplexity")
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_the_factors_and_the_log_of_a_distribution_are_steps_of_it():
    outputs = _outputs(_meta(_factored_softmax))
    assert outputs == ["word_probs:0"], outputs


def _temperature_scaled():
    """Logits trained by cross-entropy; a temperature trained by a second optimizer on the
    stopped logits; the plain softmax feeds an accuracy, the scaled one is the calibrated model."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int32, [None], name="y")
    logits = _dense(_dense(x, 8, "h", tf.nn.relu), 4, "logits")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    probs = tf.nn.softmax(logits, name="probs")
    tf.reduce_mean(tf.cast(tf.equal(tf.argmax(probs, 1, output_type=tf.int32), y), tf.float32), name="accuracy")
    t = tf1.get_variable("temperature", [], initializer=tf1.ones_initializer())
    scaled = tf.stop_gradient(logits) / t
    nll = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=scaled))
    tf.nn.softmax(scaled, name="calibrated_probs")
    tf1.train.AdamOptimizer(1e-3).minimize(loss)
    tf1.train.GradientDescentOptimizer(0.01).minimize(nll, var_list=[t])


def test_a_head_without_the_calibration_s_variable_is_the_model_before_it():
    outputs = _outputs(_meta(_temperature_scaled))
    assert outputs == ["calibrated_probs:0"], outputs


def _sampled_and_mean_decoders():
    """An encoder's mean and scale; the decoder trained on one reparameterised sample, applied to
    the mean, and averaged over eight samples; accuracies read both."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int32, [None], name="y")
    h = _dense(x, 8, "enc", tf.nn.relu)
    mu, sigma = _dense(h, 3, "mu"), tf.nn.softplus(_dense(h, 3, "sigma"))
    z = mu + sigma * tf.random.normal(tf.shape(mu))
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=_dense(z, 4, "dec")))
    probs = tf.nn.softmax(_dense(mu, 4, "dec"), name="probs")
    many = mu[None] + sigma[None] * tf.random.normal(tf.concat([[8], tf.shape(mu)], 0))
    averaged = tf.reduce_mean(tf.nn.softmax(_dense(tf.reshape(many, [-1, 3]), 4, "dec")), 0)
    for name, p in (("acc", probs), ("avg_acc", averaged)):
        tf.reduce_mean(tf.cast(tf.equal(tf.argmax(p, -1, output_type=tf.int32), y), tf.float32), name=name)
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_a_branch_drawing_random_numbers_beside_a_deterministic_one_is_left_out():
    result = resolve.resolve(_meta(_sampled_and_mean_decoders), [], [])
    outputs = [t for t, _ in result.outputs]
    assert outputs == ["probs:0"], outputs
    assert any("draws random numbers" in w for w in result.warnings), result.warnings


def _whole_and_last_position():
    """A per-position distribution over a sequence, and the distribution of its last position
    (what generation samples from), both from one logits tensor."""
    seq = tf1.placeholder(tf.float32, [None, 10, 3], name="seq")
    target = tf1.placeholder(tf.int32, [None, 10], name="target")
    w = tf1.get_variable("w", [3, 5])
    logits = tf.tensordot(seq, w, 1, name="logits")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits))
    tf.nn.softmax(logits, name="probs")
    tf.nn.softmax(logits[:, -1, :], name="next_probs")
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_a_head_of_the_whole_and_of_a_part_is_open_with_the_part_first():
    with pytest.raises(FailedPrecondition) as refused:
        resolve.resolve(_meta(_whole_and_last_position), [], [])
    assert refused.value.metadata["candidates"].split(",")[:2] == ["next_probs:0", "probs:0"], refused.value


def _codec_with_a_rate_term():
    """An autoencoder whose latents are scored under a learned density (its own variables) for a
    rate term; the distortion compares the reconstruction with the input; a PSNR averages the
    batch into one number."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = _dense(x, 4, "analysis")
    loc = tf1.get_variable("loc", [4], initializer=tf1.zeros_initializer())
    scale = tf.exp(tf1.get_variable("log_scale", [4], initializer=tf1.zeros_initializer()))
    upper, lower = tf.sigmoid((y + 0.5 - loc) / scale), tf.sigmoid((y - 0.5 - loc) / scale)
    rate = -tf.reduce_mean(tf.math.log(tf.maximum(upper - lower, 1e-9)))
    x_hat = tf.identity(_dense(y, 6, "synthesis"), name="x_hat")
    loss = tf.add(tf.reduce_mean(tf.math.squared_difference(x, x_hat)), 0.01 * rate, name="loss")
    mse = tf.reduce_mean(tf.square(tf.clip_by_value(x_hat, 0, 1) - x), 1)
    tf.reduce_mean(-10.0 * tf.math.log(mse + 1e-9), name="psnr")
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_a_rate_term_beside_a_reconstruction_and_a_batch_statistic_are_no_outputs():
    outputs = _outputs(_meta(_codec_with_a_rate_term))
    assert outputs == ["x_hat:0"], outputs
