"""Principles restated after the two wrong answers the second round of untried model kinds left
(issue 33): a library cross-entropy says which operand is the prediction, so what its logits are
computed from is an input (a few-shot model's labelled support set); logits the graph computes on
from outside the loss (a softmax) are the prediction, even when loss arithmetic over copies of
one network made them; a tensor taken out of an inference computation that goes on with layers
of its own leaves the choice open, the tap listed first."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tffreeze_server.core import resolve  # noqa: E402
from tffreeze_server.core.errors import FailedPrecondition  # noqa: E402

tf1 = tf.compat.v1


def _meta(build):
    g = tf.Graph()
    with g.as_default():
        build()
        return tf1.train.export_meta_graph(graph=g)


def _dense(x, units, name, activation=None):
    with tf1.variable_scope(name, reuse=tf1.AUTO_REUSE):
        w = tf1.get_variable("kernel", [x.shape[-1], units])
        b = tf1.get_variable("bias", [units], initializer=tf1.zeros_initializer())
        y = tf.nn.bias_add(tf.matmul(x, w), b)
        return activation(y) if activation else y


def _encoder(x):
    with tf1.variable_scope("encoder", reuse=tf1.AUTO_REUSE):
        return _dense(_dense(x, 8, "h", tf.nn.relu), 4, "emb")


def _few_shot():
    """Class means of the support embeddings (chosen by the support labels) score the queries;
    the loss compares the queries' logits with the query labels."""
    support_x = tf1.placeholder(tf.float32, [None, 6], name="support_x")
    support_y = tf1.placeholder(tf.int32, [None], name="support_y")
    query_x = tf1.placeholder(tf.float32, [None, 6], name="query_x")
    query_y = tf1.placeholder(tf.int32, [None], name="query_y")
    onehot = tf.one_hot(support_y, 3)
    means = tf.matmul(onehot, _encoder(support_x), transpose_a=True) / tf.reduce_sum(onehot, 0)[:, None]
    logits = tf.negative(tf.reduce_sum(tf.square(_encoder(query_x)[:, None, :] - means[None]), 2), name="logits")
    tf.nn.softmax(logits, name="query_probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=query_y, logits=logits))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_what_a_cross_entropy_computes_its_logits_from_is_an_input_not_a_label():
    meta = _meta(_few_shot)
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["query_probs:0"]
    compared = [e.why for e in resolve.explain(meta) if e.rule == "loss-meets-model" and e.tensor == "logits:0"]
    assert compared and "query_y" in compared[0] and "support_y" not in compared[0], compared


def _cosine_classifier():
    """Each class is one anchor example fed beside the batch; the logits are the cosine
    similarities of the two copies of one encoder, compared with the labels; a softmax serves."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    anchors = tf1.placeholder(tf.float32, [3, 6], name="class_anchors")
    y = tf1.placeholder(tf.int32, [None], name="y")
    sims = tf.matmul(tf.nn.l2_normalize(_encoder(x), 1), tf.nn.l2_normalize(_encoder(anchors), 1), transpose_b=True)
    logits = tf.multiply(sims, 10.0, name="logits")
    tf.nn.softmax(logits, name="probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_logits_the_graph_computes_on_from_beside_the_loss_are_the_prediction():
    meta = _meta(_cosine_classifier)
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["probs:0"]
    records = resolve.explain(meta)
    assert [e.claim.name for e in records if e.tensor == "logits:0" and e.rule == "loss-meets-model"] == ["PREDICTION"]
    assert not [e for e in records if e.rule == "shared-weight-copies"]


def _self_supervised():
    """Two noisy views through one encoder that returns (representation, projection); a loss
    with no labels compares the projections; the inference branch names the representation."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")

    def encoder(v):
        with tf1.variable_scope("online", reuse=tf1.AUTO_REUSE):
            rep = _dense(v, 8, "rep", tf.nn.relu)
            return rep, _dense(_dense(rep, 8, "p1", tf.nn.relu), 4, "p2")
    _, z1 = encoder(x + tf1.random_normal(tf.shape(x)))
    _, z2 = encoder(x + tf1.random_normal(tf.shape(x)))
    loss = tf.reduce_mean(tf.square(tf.nn.l2_normalize(z1, 1) - tf.stop_gradient(tf.nn.l2_normalize(z2, 1))))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)
    tf.identity(encoder(x)[0], name="representation")


def test_a_tap_on_an_inference_computation_leaves_the_choice_open_tap_first():
    with pytest.raises(FailedPrecondition) as err:
        resolve.resolve(_meta(_self_supervised), [], [])
    assert err.value.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS"
    listed = err.value.metadata["candidates"].split(",")
    assert listed[0] == "representation:0" and len(listed) == 2
    assert "online_2/p2/BiasAdd:0" in listed


def _vector_quantiser():
    """An autoencoder whose latent is snapped to a codebook: the codebook and commitment terms
    draw the encoder's output and the chosen code towards each other, each side in turn held by a
    stop_gradient; the decoder reads the straight-through latent."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    z_e = _dense(_dense(x, 8, "enc1", tf.nn.relu), 4, "enc2")
    codebook = tf1.get_variable("codebook", [5, 4])
    dist = tf.reduce_sum(tf.square(z_e[:, None, :] - codebook[None]), 2)
    z_q = tf.gather(codebook, tf.argmin(dist, 1))
    straight = z_e + tf.stop_gradient(z_q - z_e)
    recon = tf.sigmoid(_dense(straight, 6, "dec"), name="recon")
    loss = tf.add_n([tf.reduce_mean(tf.square(recon - x)),
                     tf.reduce_mean(tf.square(tf.stop_gradient(z_e) - z_q)),
                     0.25 * tf.reduce_mean(tf.square(z_e - tf.stop_gradient(z_q)))])
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_terms_that_draw_the_models_own_tensors_together_name_no_output():
    assert [t for t, _ in resolve.resolve(_meta(_vector_quantiser), [], []).outputs] == ["recon:0"]


def _hypernetwork():
    """A task embedding generates the weights a small network applies to x; the loss compares
    its prediction with y and penalises the generated weights."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    task = tf1.placeholder(tf.int32, [None], name="task")
    y = tf1.placeholder(tf.float32, [None, 1], name="y")
    flat = _dense(tf.gather(tf1.get_variable("task_embedding", [4, 5]), task), 3 + 1, "generator")
    w, b = tf.split(flat, [3, 1], 1)
    pred = tf.add(tf.matmul(x[:, None, :], w[:, :, None])[:, 0], b, name="pred")
    loss = tf.reduce_mean(tf.square(pred - y)) + 1e-4 * tf.reduce_mean(tf.square(flat))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_data_multiplied_with_generated_weights_is_an_input_and_their_penalty_no_output():
    meta = _meta(_hypernetwork)
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["pred:0"]
    compared = [e.why for e in resolve.explain(meta) if e.rule == "loss-meets-model" and e.tensor == "pred:0"]
    assert compared and "compares it with y" in compared[0] and "x" not in compared[0].split("with ")[-1].split(", ")


def _beam_like_loop():
    """A decoding loop (control flow v1) whose condition combines a step count with an
    all-finished test; its results leave through Exit nodes."""
    tf1.disable_control_flow_v2()
    try:
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        y = tf1.placeholder(tf.float32, [None, 4], name="y")
        w = tf1.get_variable("w", [4, 4])
        tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(tf.matmul(x, w) - y)))

        def cond(i, h, done):
            return tf.logical_and(i < 3, tf.logical_not(tf.reduce_all(done)))

        def body(i, h, done):
            h = tf.tanh(tf.matmul(h, w))
            return i + 1, h, tf.reduce_max(h, 1) > 0.99
        _, h, _ = tf1.while_loop(cond, body, [tf.constant(0), x, tf.zeros_like(x[:, 0], tf.bool)])
        tf.identity(h, name="decoded")
    finally:
        tf1.enable_control_flow_v2()


def test_what_a_loop_condition_reads_is_no_end_and_loop_internals_are_never_candidates():
    meta = _meta(_beam_like_loop)
    outputs = [t for t, _ in resolve.resolve(meta, [], []).outputs]
    assert "decoded:0" in outputs and not [t for t in outputs if "while/" in t], outputs
    assert not [t for t, _ in resolve.candidates(meta) if "while/" in t]


def _meta_learner():
    """Two inner gradient steps adapt the weights to a labelled support set; the training loss
    compares the adapted model's query predictions with the query labels; the un-adapted
    prediction is logged beside it."""
    support_x = tf1.placeholder(tf.float32, [None, 2], name="support_x")
    support_y = tf1.placeholder(tf.float32, [None, 1], name="support_y")
    query_x = tf1.placeholder(tf.float32, [None, 2], name="query_x")
    query_y = tf1.placeholder(tf.float32, [None, 1], name="query_y")
    w0, w1 = tf1.get_variable("w0", [2, 8]), tf1.get_variable("w1", [8, 1])

    def forward(v, a, b):
        return tf.matmul(tf.nn.relu(tf.matmul(v, a)), b)
    fast = [w0, w1]
    with tf1.name_scope("adapt"):
        for _ in range(2):
            inner = tf.reduce_mean(tf.square(forward(support_x, *fast) - support_y))
            fast = [p - 0.01 * g for p, g in zip(fast, tf.gradients(inner, fast))]
    query_pred = tf.identity(forward(query_x, *fast), name="query_pred")
    tf.identity(forward(query_x, w0, w1), name="before_adaptation")
    tf1.train.AdamOptimizer(1e-3).minimize(tf.reduce_mean(tf.square(query_pred - query_y)))


def test_gradients_the_model_computes_with_are_its_forward_computation():
    meta = _meta(_meta_learner)
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["query_pred:0"]
    assert any("before_adaptation:0" in w and "before adaptation" in w for w in res.warnings), res.warnings
    compared = [e.why for e in resolve.explain(meta) if e.rule == "loss-meets-model" and e.tensor == "query_pred:0"]
    assert compared and compared[0].endswith("compares it with query_y"), compared


# -- the fourth round of untried kinds ---------------------------------------------------------
def _adversarial_training():
    """Examples moved along the sign of the clean loss's gradient with respect to the input
    (FGSM); the training minimises the clean and the adversarial cross-entropy; an accuracy is
    written by hand from an argmax."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    y = tf1.placeholder(tf.int32, [None], name="y")

    def net(v):
        return _dense(tf.nn.relu(_dense(v, 8, "h")), 3, "out")
    logits = net(x)
    tf.nn.softmax(logits, name="probs")
    clean = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    x_adv = tf.stop_gradient(x + 0.1 * tf.sign(tf.gradients(clean, x)[0]))
    adv = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=net(x_adv)))
    tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32), name="accuracy")
    tf1.train.AdamOptimizer(1e-3).minimize(clean + adv)


def test_labels_a_loss_compares_stay_labels_whatever_a_gradient_carries_them_into():
    """y reaches the adversarial pass's layers through the input gradient; the clean loss still
    compares it as it is: a label. An argmax only an accuracy reads is the evaluation, no head."""
    meta = _meta(_adversarial_training)
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["probs:0"]
    compared = [e.why for e in resolve.explain(meta) if e.rule == "loss-meets-model"]
    assert compared and all(w.endswith("compares it with y") for w in compared), compared


def _survival():
    """A risk score whose partial likelihood orders the batch by time; a concordance index (a
    product of pairwise masks from time and event with the risk comparisons, summed over the
    batch) is logged."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    time = tf1.placeholder(tf.float32, [None], name="time")
    event = tf1.placeholder(tf.float32, [None], name="event")
    risk = tf.squeeze(_dense(tf.nn.relu(_dense(x, 8, "h")), 1, "out"), 1, name="risk")
    tf.exp(risk, name="hazard_ratio")
    risk_sorted = tf.gather(risk, tf.argsort(time, direction="DESCENDING"))
    tf1.train.AdamOptimizer(1e-3).minimize(-tf.reduce_sum((risk_sorted - tf.math.cumulative_logsumexp(risk_sorted))
                                                          * event))
    comparable = tf.cast(time[:, None] < time[None, :], tf.float32) * event[:, None]
    concordant = tf.cast(risk[:, None] > risk[None, :], tf.float32)
    tf.identity(tf.reduce_sum(comparable * concordant) / tf.maximum(tf.reduce_sum(comparable), 1.0), name="c_index")


def test_sources_a_batch_metric_joins_with_the_prediction_are_not_read_at_inference():
    res = resolve.resolve(_meta(_survival), [], [])
    assert "c_index:0" not in [t for t, _ in res.outputs]
    assert [t for t, _ in res.outputs] in (["hazard_ratio:0"], ["risk:0"], ["risk:0", "hazard_ratio:0"]), res.outputs


def _conditional_gan():
    """The discriminator reads the generator's sample joined with the class it was asked for."""
    z = tf1.placeholder(tf.float32, [None, 3], name="z")
    c = tf1.placeholder(tf.float32, [None, 2], name="c")
    real = tf1.placeholder(tf.float32, [None, 4], name="real")
    with tf1.variable_scope("gen"):
        sample = tf.tanh(_dense(tf.concat([z, c], 1), 4, "out"), name="sample")

    def disc(v):
        with tf1.variable_scope("disc", reuse=tf1.AUTO_REUSE):
            return _dense(tf.nn.leaky_relu(_dense(tf.concat([v, c], 1), 8, "h")), 1, "out")
    d_fake, d_real = disc(sample), disc(real)
    tf.sigmoid(d_fake, name="d_prob_fake")  # (read beside the losses: still the scorer's, not an output)
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    g_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_fake), logits=d_fake))
    d_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_real), logits=d_real) + bce(labels=tf.zeros_like(d_fake),
                                                                                    logits=d_fake))
    tf1.train.AdamOptimizer(1e-3).minimize(g_loss, var_list=tf1.trainable_variables("gen"))
    tf1.train.AdamOptimizer(1e-3).minimize(d_loss, var_list=tf1.trainable_variables("disc"))


def test_a_scorer_that_joins_the_models_output_with_data_reads_the_output():
    assert [t for t, _ in resolve.resolve(_meta(_conditional_gan), [], []).outputs] == ["gen/sample:0"]


def _logged_inference_graph():
    """An inference graph (no loss) whose probabilities a tf.print of a formatted string shows."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    probs = tf.nn.softmax(tf.matmul(x, tf1.get_variable("w", [4, 3])), name="probs")
    tf.print(tf.strings.format("probs={}", probs), name="log")


def test_what_only_a_print_shows_is_a_graph_sink():
    """R6 of the seventh trial: adding the log line turned probs:0 into "could not infer any
    output" (NO_OUTPUTS_FOUND)."""
    assert [t for t, _ in resolve.resolve(_meta(_logged_inference_graph), [], []).outputs] == ["probs:0"]
