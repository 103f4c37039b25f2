"""One tiny training graph per rule of output resolution (core/rules.py, core/resolve.py,
core/heads.py's REFINE_PRINCIPLES), showing what the rule claims: the typed evidence
records it makes (tensor, claim, weight, rule, the nodes that justify it) and what the
one decision (rules.decide, resolve.resolve) makes of them."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tffreeze_server.core import heads, resolve, rules  # noqa: E402
from tffreeze_server.core.errors import FailedPrecondition  # noqa: E402
from tffreeze_server.core.evidence import Claim  # noqa: E402

tf1 = tf.compat.v1


def _meta(build):
    g = tf.Graph()
    with g.as_default():
        build()
        return tf1.train.export_meta_graph(graph=g)


def _records(meta):
    return resolve.explain(meta)


def _claims(meta, rule):
    """{tensor: claim} of the records ``rule`` made."""
    return {e.tensor: e.claim for e in _records(meta) if e.rule == rule}


def _dense(x, units, name, trainable=True):
    w = tf1.get_variable(name + "_w", [x.shape[-1], units], trainable=trainable,
                         initializer=tf1.glorot_uniform_initializer(seed=1))
    return tf.matmul(x, w, name=name)


def _classifier(head=True, metric=False):
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    logits = _dense(x, 2, "logits")
    probs = tf.nn.softmax(logits, name="probs") if head or metric else None
    if metric:
        with tf.name_scope("metrics/acc"):
            tf.reduce_mean(tf.cast(tf.equal(tf.argmax(probs, 1, output_type=tf.int32), labels), tf.float32))
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_every_rule_has_a_name_a_principle_and_a_fixture_here():
    names = ([r.name for r in rules.ALL_RULES + resolve.CANDIDATE_RULES]
             + ["signature-def", "user-collection", "graph-sinks"])
    assert len(set(names)) == len(names)
    assert all(r.principle for r in rules.ALL_RULES + resolve.CANDIDATE_RULES)
    with open(__file__) as fh:
        text = fh.read()
    assert all('"%s"' % name in text for name in names)


# -- where the loss meets the model ----------------------------------------------------
def test_loss_meets_model_claims_the_prediction_compared_with_the_labels():
    meta = _meta(lambda: _classifier(head=False))
    [e] = [e for e in _records(meta) if e.rule == "loss-meets-model"]
    assert (e.tensor, e.claim, e.loss) == ("logits:0", Claim.PREDICTION, "loss")
    assert e.weight > 0 and e.nodes == ("loss", "labels")
    assert resolve.resolve(meta, [], []).outputs == [("logits:0", e.why)]


def test_heads_after_prediction_claims_the_softmax():
    meta = _meta(_classifier)
    [e] = [e for e in _records(meta) if e.rule == "heads-after-prediction"]
    assert (e.tensor, e.claim, e.follows) == ("probs:0", Claim.HEAD, "logits:0")
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["probs:0"]
    assert any(w.startswith("logits:0 left out: the graph computes its head (probs:0)") for w in res.warnings)


def test_a_head_a_metric_compares_with_the_labels_is_the_output_the_training_evaluates():
    meta = _meta(lambda: _classifier(metric=True))
    claims = _claims(meta, "heads-after-prediction")
    assert claims == {"probs:0": Claim.EVALUATED, "logits:0": Claim.SUPERSEDED}
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["probs:0"]


def _autoencoder():
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    code = tf.nn.relu(_dense(x, 2, "encode"))
    recon = _dense(code, 4, "decode")
    loss = tf.reduce_mean(tf.square(recon - x), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_trained_last_layer_claims_what_an_unlabelled_loss_reads():
    meta = _meta(_autoencoder)
    assert _claims(meta, "trained-last-layer") == {"decode:0": Claim.LOSS_INPUT}


def _fixed_offset():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    w = tf1.get_variable("w", [3, 2])
    y = tf.matmul(x, w, name="y")
    z = _dense(y, 2, "calibrate", trainable=False)
    loss = tf.reduce_mean(tf.square(z), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[w])


def test_one_untrained_layer_on_the_model_is_its_last_layer():
    meta = _meta(_fixed_offset)
    assert _claims(meta, "fixed-layer-on-model") == {"calibrate:0": Claim.LOSS_INPUT}


def _scored_by_critic():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    w = tf1.get_variable("w", [3, 3])
    y = tf.matmul(x, w, name="model_out")
    h = tf.nn.relu(_dense(y, 4, "critic_1", trainable=False))
    score = _dense(h, 1, "critic_2", trainable=False)
    loss = tf.reduce_mean(score, name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[w])


def test_a_network_no_optimizer_updates_is_not_the_model():
    meta = _meta(_scored_by_critic)
    assert _claims(meta, "scored-by-fixed-network") == {"model_out:0": Claim.LOSS_INPUT}
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["model_out:0"]


def _gram():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    e = _dense(x, 2, "embedding")
    gram = tf.matmul(e, e, transpose_b=True, name="gram")
    loss = tf.reduce_mean(gram, name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_loss_comparing_a_batch_with_itself_scores_the_embeddings():
    meta = _meta(_gram)
    assert _claims(meta, "pairwise-embeddings") == {"embedding:0": Claim.LOSS_INPUT}


def _siamese():
    a = tf1.placeholder(tf.float32, [None, 3], name="a")
    b = tf1.placeholder(tf.float32, [None, 3], name="b")
    with tf1.variable_scope("tower"):
        ea = _dense(a, 2, "embed_a_layer")
    with tf1.variable_scope("tower", reuse=True):
        w = tf1.get_variable("embed_a_layer_w")
    eb = tf.matmul(b, w, name="embed_b")
    loss = tf.reduce_mean(tf.square(ea - eb), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_copies_of_one_network_compared_are_each_an_output():
    meta = _meta(_siamese)
    claims = _claims(meta, "shared-weight-copies")
    assert claims == {"tower/embed_a_layer:0": Claim.COPY, "embed_b:0": Claim.COPY}
    [e] = [e for e in _records(meta) if e.tensor == "embed_b:0"]
    assert "tower/embed_a_layer" in e.nodes  # the other copy justifies it


# -- against -----------------------------------------------------------------------------
def _replicas():
    w = tf1.get_variable("w", [3, 2])
    losses = []
    for k in range(2):
        x = tf1.placeholder(tf.float32, [None, 3], name="x%d" % k)
        labels = tf1.placeholder(tf.int32, [None], name="labels%d" % k)
        logits = tf.matmul(x, w, name="logits%d" % k)
        losses.append(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)))
    tf1.train.GradientDescentOptimizer(0.1).minimize(tf.add(losses[0], losses[1], name="loss"))


def test_replicas_leave_the_first_copy():
    meta = _meta(_replicas)
    [(replica, claim)] = _claims(meta, "replicas").items()
    assert claim is Claim.REPLICA and replica in ("logits0:0", "logits1:0")
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == [{"logits0:0", "logits1:0"}.difference([replica]).pop()]
    assert any(w.startswith("replica left out: %s" % replica) for w in res.warnings)


def _deep_supervision():
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    h = tf.nn.relu(_dense(tf.nn.relu(_dense(x, 4, "trunk_1")), 4, "trunk_2"))
    aux = _dense(h, 2, "aux_logits")
    m = h
    for k in range(3):
        m = tf.nn.relu(_dense(m, 4, "main_%d" % k))
    main = _dense(m, 2, "main_logits")
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits
    loss = tf.add(tf.reduce_mean(xent(labels=labels, logits=main)), 0.4 * tf.reduce_mean(xent(labels=labels, logits=aux)),
                  name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_head_leaving_the_trunk_early_is_a_training_aid():
    meta = _meta(_deep_supervision)
    assert _claims(meta, "deep-supervision") == {"aux_logits:0": Claim.AUXILIARY}
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["main_logits:0"]
    assert any(w.startswith("auxiliary head left out: aux_logits:0") for w in res.warnings)


def _with_inference_branch():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.float32, [None, 2], name="labels")
    w = tf1.get_variable("w", [3, 2])
    y = tf.matmul(x, w, name="train_out")
    query = tf1.placeholder(tf.float32, [None, 3], name="query")
    tf.matmul(query, w, name="serve_out")
    loss = tf.reduce_mean(tf.square(y - labels), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_an_inference_branch_supersedes_the_training_time_prediction():
    meta = _meta(_with_inference_branch)
    claims = _claims(meta, "inference-branch")
    assert claims == {"serve_out:0": Claim.INFERENCE_BRANCH, "train_out:0": Claim.SUPERSEDED}
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["serve_out:0"]


def _decoder_beside_a_classifier():
    """A classifier head and a decoder trained together; greedy decoding recomputes the
    decoder's layers (not the classifier's) outside the loss."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    targets = tf1.placeholder(tf.float32, [None, 2], name="targets")
    trunk = tf.nn.relu(_dense(x, 4, "trunk"))
    logits = _dense(trunk, 2, "cls_logits")
    tf.nn.softmax(logits, name="probs")
    w_dec = tf1.get_variable("w_dec", [4, 2])
    teacher_forced = tf.matmul(trunk, w_dec, name="teacher_forced")
    tf.argmax(tf.matmul(tf.nn.relu(trunk), w_dec), 1, name="decoded")
    loss = tf.add(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)),
                  tf.reduce_mean(tf.square(teacher_forced - targets)), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_an_inference_branch_supersedes_only_the_predictions_it_recomputes():
    meta = _meta(_decoder_beside_a_classifier)
    claims = _claims(meta, "inference-branch")
    assert claims == {"decoded:0": Claim.INFERENCE_BRANCH, "teacher_forced:0": Claim.SUPERSEDED}
    assert sorted(t for t, _ in resolve.resolve(meta, [], []).outputs) == ["decoded:0", "probs:0"]


def _fine_tuning_with_a_pretraining_head():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    trunk = tf.nn.relu(_dense(x, 4, "trunk"))
    tf.nn.softmax(_dense(trunk, 5, "pretrain_logits"), name="pretrain_probs")
    logits = _dense(trunk, 2, "logits")
    tf.nn.softmax(logits, name="probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_sink_whose_own_layers_no_optimizer_trains_is_left_over():
    meta = _meta(_fine_tuning_with_a_pretraining_head)
    assert _claims(meta, "inference-branch") == {"pretrain_probs:0": Claim.UNTRAINED_BRANCH}
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["probs:0"]
    assert any(w.startswith("left out: pretrain_probs is computed by layers no optimizer trains") for w in res.warnings)


def _with_entropy_bonus():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    logits = _dense(x, 2, "logits")
    p = tf.nn.softmax(logits)
    entropy = -tf.reduce_sum(p * tf1.log(p + 1e-8), axis=1)
    ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    loss = tf.subtract(ce, 0.01 * tf.reduce_mean(entropy), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_loss_term_with_no_layer_of_its_own_is_loss_arithmetic():
    """The entropy bonus is one number for the batch (a batch statistic, never an example's
    prediction) or, where the loss reads it per example, loss arithmetic: never an output."""
    meta = _meta(_with_entropy_bonus)
    records = _records(meta)
    regularizers = [e for e in records if e.claim is Claim.REGULARIZER]
    assert all(e.rule == "loss-meets-model" and e.against for e in regularizers)
    claimed = {e.tensor for e in records if e.claim in (Claim.PREDICTION, Claim.LOSS_INPUT)}
    assert claimed - {e.tensor for e in regularizers} == {"logits:0"}, claimed
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["logits:0"]


def _mixture_density_head():
    """A likelihood loss over one layer's output split into a mixture's weights, means and scales."""
    x = tf1.placeholder(tf.float32, [None, 1], name="x")
    y = tf1.placeholder(tf.float32, [None, 1], name="y")
    out = _dense(tf.tanh(_dense(x, 8, "hidden")), 6, "params")
    logits, mean, log_scale = tf.split(out, 3, axis=1)
    weights, mu, sigma = tf.nn.softmax(logits, name="pi"), tf.identity(mean, name="mu"), tf.exp(log_scale, name="sigma")
    density = tf.exp(-0.5 * tf.square((y - mu) / sigma)) / (sigma * 2.5066)
    tf1.train.GradientDescentOptimizer(0.1).minimize(
        tf.reduce_mean(-tf1.log(tf.reduce_sum(weights * density, axis=1) + 1e-8), name="nll"))


def test_the_parts_of_a_last_layer_a_likelihood_reads_are_each_a_prediction():
    meta = _meta(_mixture_density_head)
    assert sorted(t for t, _ in resolve.resolve(meta, [], []).outputs) == ["mu:0", "pi:0", "sigma:0"]


def _advantage_behind_stop_gradient():
    """A policy-gradient loss weighting the log-probabilities by an advantage held fixed."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    action = tf1.placeholder(tf.int32, [None], name="action")
    returns = tf1.placeholder(tf.float32, [None], name="returns")
    logits = _dense(x, 2, "logits")
    baseline = tf.squeeze(_dense(x, 1, "baseline"), 1, name="value")
    log_prob = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=action, logits=logits)
    loss = tf.negative(tf.reduce_mean(tf.stop_gradient(returns - baseline) * log_prob), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[v for v in tf1.trainable_variables()
                                                                     if v.name.startswith("logits")])


def test_what_a_loss_reads_through_stop_gradient_is_a_target_not_a_prediction():
    meta = _meta(_advantage_behind_stop_gradient)
    claimed = [e.tensor for e in _records(meta) if e.rule == "loss-meets-model"]
    assert "logits:0" in claimed and "value:0" not in claimed


def _cross_entropy_by_hand():
    """The TF1 beginners' tutorial: softmax regression, cross-entropy written with tf.log."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    y_ = tf1.placeholder(tf.float32, [None, 3], name="y_")
    y = tf.nn.softmax(_dense(x, 3, "logits"), name="y")
    tf.argmax(y, 1, name="classes")
    loss = tf.reduce_mean(-tf.reduce_sum(y_ * tf1.log(tf.clip_by_value(y, 1e-10, 1.0)), axis=1), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_the_log_a_loss_takes_of_the_output_is_the_loss_s_and_a_decision_keeps_what_it_decides_from():
    meta = _meta(_cross_entropy_by_hand)
    assert [e.tensor for e in _records(meta) if e.rule == "loss-meets-model"] == ["y:0"]
    assert sorted(t for t, _ in resolve.resolve(meta, [], []).outputs) == ["classes:0", "y:0"]


def _multi_label_threshold():
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    labels = tf1.placeholder(tf.float32, [None, 3], name="labels")
    logits = _dense(x, 3, "logits")
    probs = tf.sigmoid(logits, name="probs")
    tf.greater(probs, 0.5, name="predicted")
    loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_threshold_after_the_probabilities_keeps_them_beside_it():
    meta = _meta(_multi_label_threshold)
    assert sorted(t for t, _ in resolve.resolve(meta, [], []).outputs) == ["predicted:0", "probs:0"]


def _loss_slices_the_scores():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.float32, [None], name="labels")
    scores = _dense(x, 2, "scores")
    tf.reduce_max(scores, axis=1, name="best")
    loss = tf.reduce_mean(tf.square(scores[:, 0] - labels), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_loss_view_of_a_model_tensor_is_that_tensor():
    meta = _meta(_loss_slices_the_scores)
    assert [e.tensor for e in _records(meta) if e.rule == "loss-meets-model"] == ["scores:0"]
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["best:0"]


def _dice_and_cross_entropy():
    """A segmentation loss: a cross-entropy on the logits plus a dice term on the sigmoid."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    target = tf1.placeholder(tf.float32, [None, 2], name="target")
    logits = _dense(x, 2, "logits")
    probs = tf.sigmoid(logits, name="probs")
    ce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits))
    dice = 1.0 - 2.0 * tf.reduce_sum(probs * target) / (tf.reduce_sum(probs) + tf.reduce_sum(target) + 1.0)
    tf1.train.GradientDescentOptimizer(0.1).minimize(tf.add(ce, dice, name="loss"))


def test_a_head_the_loss_compares_too_stands_for_its_logits():
    meta = _meta(_dice_and_cross_entropy)
    records = [e for e in _records(meta) if e.rule == "loss-meets-model"]
    assert ("logits:0", Claim.SUPERSEDED) in [(e.tensor, e.claim) for e in records]
    assert "probs:0" not in [e.tensor for e in records if e.claim is Claim.REGULARIZER]
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["probs:0"]


def _trained_by_assignments():
    """An optimizer written with assign ops (no Apply* op), a pre-training head beside."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    trunk = tf.nn.relu(_dense(x, 4, "trunk"))
    tf.nn.softmax(_dense(trunk, 5, "pretrain_logits"), name="pretrain_probs")
    logits = _dense(trunk, 2, "logits")
    tf.nn.softmax(logits, name="probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
    variables = [v for v in tf1.trainable_variables() if not v.name.startswith("pretrain")]
    grads = tf.gradients(loss, variables)
    tf.group(*[tf1.assign_sub(v, 0.1 * g) for v, g in zip(variables, grads)], name="train")


def test_variables_assigned_from_the_gradients_are_trained():
    meta = _meta(_trained_by_assignments)
    assert _claims(meta, "inference-branch") == {"pretrain_probs:0": Claim.UNTRAINED_BRANCH}
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["probs:0"]


def _two_heads_one_target():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    trunk = tf.nn.relu(_dense(x, 4, "trunk"))
    main = _dense(trunk, 2, "main_logits")
    tf.nn.softmax(main, name="probs")
    side = _dense(tf.nn.relu(_dense(trunk, 4, "side_hidden")), 2, "side_logits")

    def ce(logits):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    loss = tf.add(ce(main), 0.3 * ce(side), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_of_two_heads_on_one_target_the_one_with_an_inference_head_is_deployed():
    meta = _meta(_two_heads_one_target)
    assert _claims(meta, "one-target-one-head") == {"side_logits:0": Claim.AUXILIARY}
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["probs:0"]
    assert any(w.startswith("auxiliary head left out: side_logits:0") for w in res.warnings)


def _with_post_processing():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.float32, [None, 4], name="labels")
    y = _dense(x, 4, "scores")
    tf.reduce_max(y, axis=1, name="decoded")
    loss = tf.reduce_mean(tf.square(y - labels), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_inference_ends_are_the_outputs_after_a_prediction():
    meta = _meta(_with_post_processing)
    claims = _claims(meta, "inference-ends")
    assert claims == {"decoded:0": Claim.INFERENCE_END, "scores:0": Claim.SUPERSEDED}
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["decoded:0"]


# -- open ----------------------------------------------------------------------------------
def _two_networks():
    xa = tf1.placeholder(tf.float32, [None, 3], name="xa")
    la = tf1.placeholder(tf.float32, [None, 2], name="la")
    xb = tf1.placeholder(tf.float32, [None, 3], name="xb")
    lb = tf1.placeholder(tf.float32, [None, 2], name="lb")
    wa, wb = tf1.get_variable("wa", [3, 2]), tf1.get_variable("wb", [3, 2])
    ya, yb = tf.matmul(xa, wa, name="net_a"), tf.matmul(xb, wb, name="net_b")
    tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(ya - la), name="loss_a"), var_list=[wa])
    tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(yb - lb), name="loss_b"), var_list=[wb])


def test_separately_trained_networks_leave_the_choice_open():
    meta = _meta(_two_networks)
    records = [e for e in _records(meta) if e.rule == "separately-trained-networks"]
    assert {e.tensor for e in records} == {"net_a:0", "net_b:0"} and all(e.weight == 0 for e in records)
    with pytest.raises(FailedPrecondition) as err:
        resolve.resolve(meta, [], [])
    assert err.value.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS"
    assert err.value.metadata["candidates"].split(",") == ["net_a:0", "net_b:0"]


# -- the ranked sources --------------------------------------------------------------------
def _signed():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    y = tf.identity(_dense(x, 2, "dense"), name="y")
    tf.identity(y, name="z")


def test_signature_def_outranks_the_graph_sinks():
    meta = _meta(_signed)
    meta.signature_def["serving_default"].inputs["x"].name = "x:0"
    meta.signature_def["serving_default"].outputs["y"].name = "y:0"
    meta.signature_def["serving_default"].outputs["y"].dtype = 1
    res = resolve.resolve(meta, [], [], "serving_default")
    assert res.outputs == [("y:0", "signature_def 'serving_default' output 'y'")]
    assert [(e.claim, e.rule) for e in res.evidence] == [(Claim.SIGNATURE_OUTPUT, "signature-def")]
    weights = {e.rule: e.weight for e in resolve.explain(meta, "serving_default")}
    assert weights["signature-def"] > weights["graph-sinks"]


def test_user_collection_names_the_outputs():
    meta = _meta(_signed)
    meta.collection_def["output"].node_list.value.append("y:0")
    res = resolve.resolve(meta, [], [])
    assert res.outputs == [("y:0", "collection 'output'")]
    assert [(e.claim, e.rule) for e in res.evidence] == [(Claim.COLLECTION_OUTPUT, "user-collection")]


def test_graph_sinks_answer_for_a_graph_without_a_loss():
    meta = _meta(_signed)
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["z:0"]
    assert [(e.claim, e.rule) for e in res.evidence] == [(Claim.SINK, "graph-sinks")]


def _predict_graph_with_its_loss():
    """An inference graph (no optimizer) that still computes its loss from a label placeholder."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    label_ids = tf1.placeholder(tf.int32, [None], name="label_ids")
    logits = _dense(x, 2, "logits")
    tf.nn.softmax(logits, name="probs")
    log_probs = tf.nn.log_softmax(logits)
    tf.reduce_mean(-tf.reduce_sum(tf.one_hot(label_ids, 2) * log_probs, axis=-1), name="loss")


def test_a_loss_computed_without_training_is_not_a_graph_sink_output():
    meta = _meta(_predict_graph_with_its_loss)
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["probs:0"]
    assert [(e.tensor, e.claim) for e in res.evidence if e.against] == [("loss:0", Claim.COMPUTED_LOSS)]
    assert any(w.startswith("left out: loss reduces what the model computes together with label_ids")
               for w in res.warnings)


def test_refine_principles_are_named_rules_too():
    assert {r.name for r in heads.REFINE_PRINCIPLES} == {
        "trained-last-layer", "fixed-layer-on-model", "scored-by-fixed-network", "pairwise-embeddings",
        "shared-weight-copies", "computed-on-beside-the-loss", "distance-to-reference"}


def _anomaly_detector():
    """An autoencoder whose loss averages a per-example reconstruction error, which the graph
    also compares with a saved threshold: the anomaly decision."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    recon = _dense(tf.nn.relu(_dense(x, 2, "enc")), 4, "dec")
    score = tf.reduce_mean(tf.square(recon - x), axis=1, name="score")
    threshold = tf1.get_variable("threshold", [], trainable=False, initializer=tf1.constant_initializer(0.5))
    tf.greater(score, threshold, name="is_anomaly")
    tf1.train.AdamOptimizer(1e-3).minimize(tf.reduce_mean(score))


def test_a_score_the_graph_computes_on_from_beside_an_unlabelled_loss_is_an_output():
    meta = _meta(_anomaly_detector)
    assert "score:0" in _claims(meta, "computed-on-beside-the-loss")
    assert sorted(t for t, _ in resolve.resolve(meta, [], []).outputs) == ["is_anomaly:0", "score:0"]


# -- how candidates are listed -------------------------------------------------------------
def _scores_without_loss():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    probs = tf.nn.softmax(_dense(x, 2, "dense"), name="probs")
    tf.identity(probs, name="out")


def test_candidates_are_listed_by_named_principles():
    listed = {(e.tensor, e.rule) for e in resolve.candidate_records(_meta(_scores_without_loss))}
    assert {("probs:0", "head-op"), ("dense:0", "last-layer"), ("out:0", "model-computation-end")} <= listed
    records = resolve.candidate_records(_meta(_deep_supervision))
    assert [e.rule for e in records][:2] == ["structure-decision", "loss-reads"]
    assert records[1].tensor == "aux_logits:0"
    assert all(e.claim is Claim.CANDIDATE and e.weight == 0 for e in records)
    meta = _meta(_two_networks)
    assert resolve.candidates(meta) == [(e.tensor, e.why) for e in resolve.candidate_records(meta)]
    assert {e.rule for e in resolve.candidate_records(meta)[:2]} == {"structure-decision"}


# -- principles restated after the generated held-out half (a pixel shuffle, a GAN on a labelled model) --
def _pixel_shuffle_denoiser():
    """A denoising super-resolution net: its output is a pixel shuffle (depth_to_space) of its
    last layer, and the loss compares it with the clean image it was given (no labels)."""
    x = tf1.placeholder(tf.float32, [None, 4, 4, 1], name="x")
    h = _dense(tf.reshape(x, [-1, 16]), 16, "upsample")
    image = tf.nn.depth_to_space(tf.reshape(h, [-1, 2, 2, 4]), 2, name="image")
    loss = tf.reduce_mean(tf.square(image - x), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_pixel_shuffle_finishes_the_layer_it_rearranges():
    meta = _meta(_pixel_shuffle_denoiser)
    assert _claims(meta, "trained-last-layer") == {"image:0": Claim.LOSS_INPUT}
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["image:0"]


def _gan_on_a_regressor(serving_branch=True):
    """A regressor trained with a labelled loss plus an adversarial term: a discriminator (its own
    optimizer) scores the prediction, flattened in the discriminator's scope, against real samples. A
    serving tower recomputes the regressor's layer on its own input."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    y = tf1.placeholder(tf.float32, [None, 2], name="y")
    w = tf1.get_variable("gen_w", [3, 2])
    pred = tf.matmul(x, w, name="pred")
    with tf1.variable_scope("disc", reuse=tf1.AUTO_REUSE):
        def disc(t):
            return _dense(tf.nn.leaky_relu(_dense(t, 4, "fc")), 1, "out")
        d_fake = disc(tf.reshape(pred, [-1, 2]))
        d_real = disc(tf1.placeholder(tf.float32, [None, 2], name="real"))
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    g_loss = tf.add(tf.reduce_mean(tf.square(pred - y)),
                    0.1 * tf.reduce_mean(bce(labels=tf.ones_like(d_fake), logits=d_fake)), name="g_loss")
    d_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_real), logits=d_real)
                            + bce(labels=tf.zeros_like(d_fake), logits=d_fake), name="d_loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(g_loss, var_list=[w])
    tf1.train.GradientDescentOptimizer(0.1).minimize(d_loss, var_list=tf1.trainable_variables("disc"))
    if serving_branch:
        serve_x = tf1.placeholder(tf.float32, [None, 3], name="serve_x")
        tf.nn.relu(tf.matmul(serve_x, w), name="served")


def test_a_score_only_an_unlabelled_loss_compares_is_not_compared_with_the_labels():
    """The discriminator's score on the prediction is added to the labelled total (g_loss) but
    compared with nothing but the discriminator's own targets: it is not a labelled prediction the
    serving tower would stand beside (here the discriminator is also the regressor's critic)."""
    meta = _meta(_gan_on_a_regressor)
    against = {e.tensor for e in _records(meta) if e.claim in (Claim.SUPERSEDED, Claim.CRITIC)}
    assert {"disc/out:0", "disc/out_1:0"} <= against and "disc/out:0" in _claims(meta, "trained-last-layer")
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["served:0"]


def test_a_reshape_of_a_found_prediction_is_that_prediction():
    """The discriminator reads the prediction flattened (disc/Reshape): one candidate, not two."""
    meta = _meta(lambda: _gan_on_a_regressor(serving_branch=False))
    found = [e.tensor for e in _records(meta) if e.rule in ("loss-meets-model", "scored-by-fixed-network")]
    assert "pred:0" in found and not any(t.startswith("disc/Reshape") for t in found)


def _two_networks_one_with_top_k_and_a_sampler():
    _two_networks()
    g = tf1.get_default_graph()
    tf.math.top_k(g.get_tensor_by_name("net_a:0"), 1, name="best")
    wb = [v for v in tf1.global_variables() if v.name == "wb:0"][0]
    tf.random.categorical(tf.matmul(tf1.placeholder(tf.float32, [None, 3], name="zb"), wb), 1, name="sampled")


def test_an_open_choice_lists_the_inference_branches_and_every_output_of_a_selection():
    with pytest.raises(FailedPrecondition) as err:
        resolve.resolve(_meta(_two_networks_one_with_top_k_and_a_sampler), [], [])
    listed = err.value.metadata["candidates"].split(",")
    assert "sampled/Multinomial:0" in listed and listed.index("best:1") == listed.index("best:0") + 1


def _distillation_in_a_loss_scope():
    """A student distilled from a fixed teacher: the soft targets (behind stop_gradient) are taken
    outside the loss's name scope, the loss compares them inside it."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    student = _dense(x, 2, "student")
    soft = tf.stop_gradient(tf.nn.softmax(_dense(x, 2, "teacher", trainable=False) / 2.0), name="soft")
    with tf.name_scope("loss"):
        total = tf.add(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student)),
                       tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=student / 2.0)),
                       name="total")
    tf1.train.GradientDescentOptimizer(0.1).minimize(total)


def test_soft_targets_behind_stop_gradient_are_no_prediction_in_a_loss_scope():
    meta = _meta(_distillation_in_a_loss_scope)
    claimed = [e.tensor for e in _records(meta) if e.rule == "loss-meets-model"]
    assert "student:0" in claimed and "soft:0" not in claimed
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["student:0"]


def _decoder_given_the_true_class():
    """A capsule-style classifier: class scores are vector lengths, a margin loss compares them with
    the labels by hand, and a reconstruction decoder reads the features masked by the true class in
    training (by the predicted class otherwise): the training feeds the labels into the model."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    caps = tf.reshape(_dense(x, 6, "caps"), [-1, 3, 2])
    lengths = tf.sqrt(tf.reduce_sum(tf.square(caps), -1) + 1e-7, name="lengths")
    classes = tf.argmax(lengths, 1, name="classes")
    t = tf.one_hot(y, 3)
    margin = tf.reduce_sum(t * tf.square(tf.maximum(0., 0.9 - lengths))
                           + 0.5 * (1. - t) * tf.square(tf.maximum(0., lengths - 0.1)), 1)
    use_labels = tf1.placeholder_with_default(False, [], name="use_labels")
    masked = tf.reshape(caps * tf.expand_dims(tf.one_hot(tf.cond(use_labels, lambda: y, lambda: classes), 3), -1),
                        [-1, 6])
    recon = tf.sigmoid(_dense(tf.nn.relu(_dense(masked, 8, "dec_hidden")), 6, "dec_out"), name="recon")
    loss = tf.add(tf.reduce_mean(margin), 0.0005 * tf.reduce_mean(tf.square(x - recon)), name="loss")
    tf1.train.AdamOptimizer(0.01).minimize(loss)


def test_labels_the_training_feeds_into_the_model_are_still_labels():
    """y is compared, as it is, with lengths computed without it: the labels, though the decoder reads
    them in training. The walk up the loss does not go up through the decoder they feed, and the margin
    loss's arithmetic leads up to the lengths the argmax reads."""
    meta = _meta(_decoder_given_the_true_class)
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["lengths:0"]


def _crf_tagger():
    """A linear-chain CRF (control flow v1, as TF1 code built it): the forward algorithm's
    tf.scan and the Viterbi decode's read one time-major transpose of the emissions; the gold path's
    score is a gather of the emissions and the transitions by the tags."""
    tf1.disable_control_flow_v2()
    try:
        words = tf1.placeholder(tf.float32, [None, 4, 3], name="words")
        tags = tf1.placeholder(tf.int32, [None, 4], name="tags")
        emissions = tf.reshape(_dense(tf.reshape(words, [-1, 3]), 2, "emit"), [-1, 4, 2], name="emissions")
        transitions = tf1.get_variable("transitions", [2, 2])
        gold = (tf.reduce_sum(tf.gather(emissions, tags, batch_dims=2), 1)
                + tf.reduce_sum(tf.gather_nd(transitions, tf.stack([tags[:, :-1], tags[:, 1:]], -1)), 1))
        em_t = tf.transpose(emissions, [1, 0, 2])
        alphas = tf.scan(lambda a, e: tf.reduce_logsumexp(a[:, :, None] + transitions[None], 1) + e, em_t[1:],
                         initializer=em_t[0])
        loss = tf.reduce_mean(tf.reduce_logsumexp(alphas[-1], 1) - gold, name="nll")

        def step(carry, e):
            cand = carry[0][:, :, None] + transitions[None]
            return tf.reduce_max(cand, 1) + e, tf.argmax(cand, 1, output_type=tf.int32)
        scores, back = tf.scan(step, em_t[1:], initializer=(em_t[0], tf.zeros_like(em_t[0], tf.int32)))
        last = tf.argmax(scores[-1], 1, output_type=tf.int32)
        prev = tf.scan(lambda tag, bp: tf.gather(bp, tag, batch_dims=1), back[::-1], initializer=last)
        tf.transpose(tf.concat([prev[::-1], last[None]], 0), [1, 0], name="best_path")
        tf1.train.AdamOptimizer(0.01).minimize(loss)
    finally:
        tf1.enable_control_flow_v2()


def test_decoding_that_starts_from_a_view_the_loss_reads_is_the_inference_computation():
    """The tags are the labels (the loss compares them with the emissions, gathered without a weight);
    the Viterbi decode starts at the transpose the loss reads too and runs through v1 loops: its
    result is the output, not what only enters a loop nor a loop's unused exits."""
    meta = _meta(_crf_tagger)
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["best_path:0"]
    assert [t for t, _ in res.inputs or []] in ([], ["words:0"])


def _dqn_with_exploration():
    """A DQN: the online network's Q-values, the greedy action, an epsilon-greedy action that
    replaces it by a random one where a coin says so (what the training loop acts with), and a
    target network held fixed behind stop_gradient."""
    obs = tf1.placeholder(tf.float32, [None, 3], name="obs")
    action = tf1.placeholder(tf.int32, [None], name="action")
    reward = tf1.placeholder(tf.float32, [None], name="reward")
    next_obs = tf1.placeholder(tf.float32, [None, 3], name="next_obs")
    epsilon = tf1.placeholder(tf.float32, [], name="epsilon")
    q = tf.identity(_dense(tf.nn.relu(_dense(obs, 4, "online_fc")), 2, "online_q"), name="q_values")
    q_next = _dense(tf.nn.relu(_dense(next_obs, 4, "target_fc", trainable=False)), 2, "target_q", trainable=False)
    greedy = tf.argmax(q, 1, output_type=tf.int32, name="greedy_action")
    n = tf.shape(obs)[0]
    tf1.where(tf1.random_uniform([n]) < epsilon, tf1.random_uniform([n], 0, 2, dtype=tf.int32), greedy,
              name="epsilon_greedy")
    q_sa = tf.reduce_sum(q * tf.one_hot(action, 2), 1)
    target = tf.stop_gradient(reward + 0.99 * tf.reduce_max(q_next, 1))
    loss = tf.reduce_mean(tf.square(target - q_sa), name="loss")
    tf1.train.AdamOptimizer(0.01).minimize(loss)


def test_exploration_noise_chosen_by_a_coin_is_no_inference_end():
    assert [t for t, _ in resolve.resolve(_meta(_dqn_with_exploration), [], []).outputs] == ["greedy_action:0"]


def _headless_beside_a_regression(sigmoid=True, distilled_only=False):
    """Logits of their own labels (a sigmoid or a softmax cross-entropy) with no head computed
    from them, beside a regression of other labels; or (``distilled_only``) a regression whose
    only cross-entropy is with a fixed teacher's soft targets."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    a_labels = tf1.placeholder(tf.float32, [None, 2], name="a_labels")
    b_labels = tf1.placeholder(tf.float32, [None, 2], name="b_labels")
    trunk = tf.nn.relu(_dense(x, 4, "trunk"))
    a, b = _dense(trunk, 2, "a"), _dense(trunk, 2, "b")
    if distilled_only:
        soft = tf.stop_gradient(tf.nn.softmax(_dense(x, 2, "teacher", trainable=False)))
        a_term = (tf.reduce_mean(tf.square(a - a_labels))
                  + tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=a)))
    elif sigmoid:
        a_term = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=a_labels, logits=a))
    else:
        a_term = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=a_labels, logits=a))
    loss = tf.add(a_term, tf.reduce_mean(tf.square(b - b_labels)), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


@pytest.mark.parametrize("sigmoid", [True, False])
def test_headless_classifier_logits_beside_other_labels_leave_the_choice_open(sigmoid):
    meta = _meta(lambda: _headless_beside_a_regression(sigmoid))
    assert _claims(meta, "one-target-one-head") == {"a:0": Claim.HEADLESS}
    with pytest.raises(FailedPrecondition) as err:
        resolve.resolve(meta, [], [])
    assert set(err.value.metadata["candidates"].split(",")) == {"a:0", "b:0"}


def test_a_cross_entropy_with_a_teacher_s_soft_targets_makes_no_classifier():
    meta = _meta(lambda: _headless_beside_a_regression(distilled_only=True))
    assert not _claims(meta, "one-target-one-head")
    assert sorted(t for t, _ in resolve.resolve(meta, [], []).outputs) == ["a:0", "b:0"]


def _gan(domain_critic=False):
    """A GAN (generator and discriminator trained by their own optimizers): the discriminator scores
    the generator's samples against real ones. Or (``domain_critic``) a classifier whose trunk
    features a critic trained apart tells apart from another domain's (the classifier's loss fools it)."""
    z = tf1.placeholder(tf.float32, [None, 3], name="z")
    real = tf1.placeholder(tf.float32, [None, 4], name="real")
    if domain_critic:
        labels = tf1.placeholder(tf.int32, [None], name="labels")
        features = tf.nn.relu(_dense(z, 4, "gen_trunk"), name="features")
        logits = _dense(features, 2, "gen_logits")
        tf.nn.softmax(logits, name="probs")
        fake = features
    else:
        fake = tf.tanh(_dense(tf.nn.relu(_dense(z, 4, "gen_fc")), 4, "gen_out"), name="samples")
    with tf1.variable_scope("disc", reuse=tf1.AUTO_REUSE):
        def disc(t):
            return _dense(tf.nn.leaky_relu(_dense(t, 4, "fc")), 1, "out")
        d_fake, d_real = disc(fake), disc(real)
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    g_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_fake), logits=d_fake))
    if domain_critic:
        g_loss += tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    g_loss = tf.identity(g_loss, name="g_loss")
    d_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_real), logits=d_real)
                            + bce(labels=tf.zeros_like(d_fake), logits=d_fake), name="d_loss")
    tf1.train.AdamOptimizer(0.01).minimize(g_loss, var_list=[v for v in tf1.trainable_variables()
                                                              if v.name.startswith("gen")])
    tf1.train.AdamOptimizer(0.01).minimize(d_loss, var_list=tf1.trainable_variables("disc"))


def test_a_network_trained_apart_that_scores_another_s_output_is_its_critic():
    meta = _meta(_gan)
    claims = _claims(meta, "critic-networks")
    assert claims and set(claims.values()) == {Claim.CRITIC} and all(t.startswith("disc/") for t in claims)
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["samples:0"]
    assert any("network trained apart" in w for w in res.warnings)


def test_the_features_a_domain_critic_scores_are_no_output():
    """The adversarial term is added to the labelled one: a loss term, never a prediction the labels
    meet; the features it scores are a candidate of nothing, or the critic rule's claim leaves them out."""
    meta = _meta(lambda: _gan(domain_critic=True))
    found = {e.tensor for e in _records(meta) if e.weight > 0}
    assert "features:0" not in found or _claims(meta, "critic-networks").get("features:0") is Claim.CRITIC, found
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["probs:0"]


def _info_gan():
    """A generator of noise and a code; a discriminator's trunk shared with a code-predicting head
    (Q). The discriminator's optimizer trains the trunk and its head; the mutual-information loss
    trains generator, trunk and Q together, so no two networks are trained apart. Q is also applied
    to real images for evaluation (no loss reads it)."""
    z = tf1.placeholder(tf.float32, [None, 4], name="z")
    code = tf1.placeholder(tf.float32, [None, 2], name="code")
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    with tf1.variable_scope("gen"):
        sample = tf.tanh(_dense(tf.nn.relu(_dense(tf.concat([z, code], 1), 8, "fc")), 6, "out"), name="sample")

    def trunk(t):
        with tf1.variable_scope("trunk", reuse=tf1.AUTO_REUSE):
            return tf.nn.leaky_relu(_dense(t, 8, "fc"))

    def head(t, name, units):
        with tf1.variable_scope(name, reuse=tf1.AUTO_REUSE):
            return _dense(t, units, "out")
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    d_real, d_fake = head(trunk(x), "disc", 1), head(trunk(sample), "disc", 1)
    d_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_real), logits=d_real) + bce(labels=tf.zeros_like(d_fake),
                                                                                   logits=d_fake), name="d_loss")
    g_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_fake), logits=d_fake), name="g_loss")
    q_loss = tf.reduce_mean(tf.square(head(trunk(sample), "q", 2) - code), name="q_loss")
    tf.identity(head(trunk(x), "q", 2), name="q_on_real")
    variables = {s: tf1.trainable_variables(s) for s in ("gen", "trunk", "disc", "q")}
    tf1.train.AdamOptimizer(1e-3).minimize(d_loss, var_list=variables["trunk"] + variables["disc"])
    tf1.train.AdamOptimizer(1e-3).minimize(g_loss, var_list=variables["gen"])
    tf1.train.AdamOptimizer(1e-3).minimize(q_loss, var_list=variables["gen"] + variables["trunk"] + variables["q"])


def test_what_a_network_feeds_where_another_reads_data_is_a_generated_sample():
    meta = _meta(_info_gan)
    assert _claims(meta, "generated-samples").get("gen/sample:0") is Claim.GENERATED
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["gen/sample:0"], res.outputs
    assert any("generated sample" in w for w in res.warnings), res.warnings


def _actor_critic_on_replayed_actions():
    """A deterministic policy gradient: a critic scores (state, action) pairs, the replayed ones in
    its own loss and the actor's in the actor's loss, which trains the actor only."""
    state = tf1.placeholder(tf.float32, [None, 4], name="state")
    action = tf1.placeholder(tf.float32, [None, 2], name="action")
    target_q = tf1.placeholder(tf.float32, [None, 1], name="target_q")
    with tf1.variable_scope("actor"):
        act = tf.tanh(_dense(tf.nn.relu(_dense(state, 8, "fc")), 2, "out"), name="act")

    def critic(a):
        with tf1.variable_scope("critic", reuse=tf1.AUTO_REUSE):
            return _dense(tf.nn.relu(_dense(tf.concat([state, a], 1), 8, "fc")), 1, "q")
    critic_loss = tf.reduce_mean(tf.square(critic(action) - target_q), name="critic_loss")
    actor_loss = tf.negative(tf.reduce_mean(critic(act)), name="actor_loss")
    tf1.train.AdamOptimizer(1e-3).minimize(critic_loss, var_list=tf1.trainable_variables("critic"))
    tf1.train.AdamOptimizer(1e-3).minimize(actor_loss, var_list=tf1.trainable_variables("actor"))


def test_an_action_a_critic_scores_beside_replayed_ones_is_generated():
    meta = _meta(_actor_critic_on_replayed_actions)
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["actor/act:0"]


def _one_model_applied_twice():
    """One objective trains a network applied to the data and to its own earlier output (two steps
    of a refinement): the same weights, no critic."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    y = tf1.placeholder(tf.float32, [None, 3], name="y")
    first = _dense(x, 3, "first")
    with tf1.variable_scope("refine", reuse=tf1.AUTO_REUSE):
        w = tf1.get_variable("w", [3, 3])
    step1 = tf.matmul(x, w)
    step2 = tf.matmul(first, w, name="refined")
    loss = tf.reduce_mean(tf.square(step2 - y) + tf.square(step1 - y), name="loss")
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_a_network_one_objective_trains_applied_twice_generates_nothing():
    assert not _claims(_meta(_one_model_applied_twice), "generated-samples")


def _small_head_of_other_labels():
    """A big regression head and a small classifier off the same trunk, each of its own labels:
    two tasks, not a training aid (deep supervision compares one target twice)."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    y_big = tf1.placeholder(tf.float32, [None, 2], name="y_big")
    y_small = tf1.placeholder(tf.int32, [None], name="y_small")
    trunk = tf.nn.relu(_dense(tf.nn.relu(_dense(x, 4, "trunk0")), 4, "trunk1"))
    h = trunk
    for k in range(4):
        h = tf.nn.relu(_dense(h, 4, "deep%d" % k))
    big = _dense(h, 2, "big")
    small = _dense(trunk, 2, "small")
    tf.nn.softmax(small, name="small_probs")
    loss = tf.add(tf.reduce_mean(tf.square(big - y_big)),
                  tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_small, logits=small)),
                  name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_small_head_of_other_labels_is_no_deep_supervision():
    meta = _meta(_small_head_of_other_labels)
    assert not _claims(meta, "deep-supervision")
    assert sorted(t for t, _ in resolve.resolve(meta, [], []).outputs) == ["big:0", "small_probs:0"]


def _threshold_on_probabilities_of_a_hand_written_loss():
    """A sigmoid classifier whose loss is written by hand on the probabilities, and a 0/1 decision
    thresholded from them: the decision is an inference end; the probabilities stay beside it."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    y = tf1.placeholder(tf.float32, [None, 1], name="y")
    probs = tf.sigmoid(_dense(x, 1, "logit"), name="probs")
    tf.cast(probs > 0.5, tf.int32, name="decision")
    loss = tf.negative(tf.reduce_mean(y * tf1.log(probs + 1e-7) + (1 - y) * tf1.log(1 - probs + 1e-7)), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss)


def test_a_decision_keeps_the_probabilities_a_hand_written_loss_reads():
    meta = _meta(_threshold_on_probabilities_of_a_hand_written_loss)
    assert ("probs:0", Claim.INFERENCE_END) in [(e.tensor, e.claim) for e in _records(meta) if e.rule == "inference-ends"]
    assert sorted(t for t, _ in resolve.resolve(meta, [], []).outputs) == ["decision:0", "probs:0"]


def _regression_printed_for_debugging():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    y = tf1.placeholder(tf.float32, [None, 1], name="y")
    h = _dense(x, 1, "h")
    with tf.control_dependencies([tf.print("h:", h)]):
        h = tf.identity(h)
    out = tf.identity(h, name="out")
    tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(out - y), name="loss"))


def test_a_debug_print_s_string_is_no_output():
    meta = _meta(_regression_printed_for_debugging)
    outputs = [t for t, _ in resolve.resolve(meta, [], []).outputs]
    assert outputs == ["out:0"], outputs


def test_an_output_named_twice_is_one_output_with_a_warning():
    meta = _meta(_classifier)
    res = resolve.resolve(meta, ["probs", "probs:0", "logits"], ["x", "x:0"])
    assert [t for t, _ in res.outputs] == ["probs:0", "logits:0"]
    assert [t for t, _ in res.inputs] == ["x:0"]
    assert any("options.outputs names probs:0 more than once" in w for w in res.warnings), res.warnings
    assert any("options.inputs names x:0 more than once" in w for w in res.warnings), res.warnings


def _unrolled_pointer_decoder():
    """A pointer-style decoder unrolled in Python: trained teacher-forced on the target indices; at
    inference a greedy pass whose ids are stacked, whose logits are stacked too (unused), and
    whose last step still prepares a next input nothing reads."""
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    target = tf1.placeholder(tf.int32, [None, 2], name="target")
    w = tf1.get_variable("w", [1, 3])

    def decode(teacher):
        inp, logits, ids = tf.zeros_like(x[:, :1]), [], []
        for t in range(2):
            step = tf.matmul(inp, w) + x
            logits.append(step)
            ids.append(tf.argmax(step, 1, output_type=tf.int32))
            inp = tf.gather(x, teacher[:, t] if teacher is not None else ids[-1], batch_dims=1)[:, None]
        return tf.stack(logits, 1), tf.stack(ids, 1)
    trained, _ = decode(target)
    _, ids = decode(None)
    tf.identity(ids, name="pointers")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=trained), name="loss")
    tf1.train.AdamOptimizer(0.01).minimize(loss)


def test_several_ends_of_one_inference_computation_leave_the_choice_open():
    meta = _meta(_unrolled_pointer_decoder)
    assert "pointers:0" in _claims(meta, "inference-branch")
    with pytest.raises(FailedPrecondition) as err:
        resolve.resolve(meta, [], [])
    listed = err.value.metadata["candidates"].split(",")
    assert "pointers:0" in listed[:3] and len(listed) >= 2, listed


def test_a_prediction_s_reason_names_the_labels_its_own_loss_reads():
    whys = {e.tensor: e.why for e in _records(_meta(_two_networks)) if e.rule == "loss-meets-model"}
    assert whys["net_a:0"].endswith("compares it with la") and whys["net_b:0"].endswith("compares it with lb"), whys


def _domain_adversarial():
    """A classifier whose trunk features a domain head reads through a gradient reversal written
    with a stop_gradient; one optimizer trains both heads and the trunk."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    y = tf1.placeholder(tf.int32, [None], name="y")
    domain = tf1.placeholder(tf.int32, [None], name="domain")
    strength = tf1.placeholder_with_default(0.1, [], name="strength")
    features = tf.nn.relu(_dense(x, 8, "trunk"))
    logits = _dense(features, 3, "classes")
    tf.nn.softmax(logits, name="probs")
    reversed_features = tf.stop_gradient((1.0 + strength) * features) - strength * features
    domain_logits = _dense(tf.nn.relu(_dense(reversed_features, 8, "domain_h")), 2, "domain_out")
    tf.nn.softmax(domain_logits, name="domain_probs")
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits
    tf1.train.AdamOptimizer(1e-3).minimize(tf.reduce_mean(xent(labels=y, logits=logits))
                                           + tf.reduce_mean(xent(labels=domain, logits=domain_logits)))


def test_a_head_behind_a_gradient_reversal_is_an_adversary_not_an_output():
    meta = _meta(_domain_adversarial)
    assert _claims(meta, "gradient-reversal") == {"domain_out:0": Claim.CRITIC}
    res = resolve.resolve(meta, [], [])
    assert [t for t, _ in res.outputs] == ["probs:0"]
    assert any("gradient reversal" in w for w in res.warnings), res.warnings


def _margin_logits():
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int32, [None], name="y")
    emb = tf.nn.l2_normalize(tf.nn.relu(_dense(x, 8, "trunk")), 1, name="embedding")
    cos = tf.matmul(emb, tf.nn.l2_normalize(tf1.get_variable("centres", [8, 4]), 0), name="cos")
    mask = tf.one_hot(y, 4)
    logits = 20.0 * (cos - 0.2 * mask)  # an additive margin on the true class
    tf1.train.AdamOptimizer(1e-3).minimize(
        tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))


def test_labels_in_the_logits_open_the_choice_between_the_representation_and_the_scores():
    meta = _meta(_margin_logits)
    assert _claims(meta, "labels-in-the-logits") == {"embedding:0": Claim.ONE_COMPUTATION,
                                                     "cos:0": Claim.ONE_COMPUTATION}


def _one_class():
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    phi = tf.identity(_dense(tf.nn.relu(_dense(x, 8, "h")), 4, "rep"), name="phi")
    centre = tf1.get_variable("centre", [4], trainable=False)
    score = tf.reduce_sum(tf.square(phi - centre), axis=1, name="score")
    tf1.train.AdamOptimizer(1e-3).minimize(tf.reduce_mean(score))


def test_a_distance_to_a_stored_reference_leaves_the_score_and_the_output_open():
    meta = _meta(_one_class)
    assert _claims(meta, "distance-to-reference") == {"phi:0": Claim.ONE_COMPUTATION,
                                                      "score:0": Claim.ONE_COMPUTATION}
