"""Principles from the fourteenth round of models of kinds nobody named (issue 33).

- A metric that takes the examples one at a time (``pred[i]`` for a fixed ``i``, a flat argmax's
  row and column) and adds their errors up is one number for the batch: the labels it compares
  are labels, and what it reads of the model is evaluated, not deployed.
- A source that only says which examples go where (the indices of a gather, of a dynamic
  stitch: a treatment or a domain that routes examples through one of two heads) decides the
  model's computation; the loss weighing examples by it does not make it the labels.
- A placeholder declared with no batch axis where the data placeholders declare one holds one
  value per run: a loss's coefficient, never the labels.
- Terms added to a labelled loss term that is one number (a penalty, scaled by such a
  coefficient) are loss terms, not predictions that the labels meet.

Each fixture is a small graph of a kind the round did not hold, written for the principle."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402

tf1 = tf.compat.v1
_meta, _dense, _answer = principle_graphs.meta, principle_graphs.dense, principle_graphs.answer


def test_an_error_added_up_one_example_at_a_time_is_evaluation():
    """A peak finder over a signal: a distribution over 32 positions per example. Its accuracy
    walks the batch in Python, comparing the argmax of ``pred[i]`` with the label's."""
    batch = 4

    def build():
        x = tf1.placeholder(tf.float32, [None, 32], name="signal")
        y = tf1.placeholder(tf.float32, [None, 32], name="true_position")
        logits = _dense(_dense(x, 16, "conv", tf.nn.relu), 32, "positions")
        tf.nn.softmax(logits, name="position_probs")
        tf1.train.AdamOptimizer().minimize(
            tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)))
        with tf1.name_scope("accuracy"):
            err = tf.constant(0.0)
            for i in range(batch):
                p, t = tf.argmax(logits[i], 0), tf.argmax(y[i], 0)
                err += tf.abs(tf.cast(p // 8 - t // 8, tf.float32)) + tf.abs(tf.cast(p % 8 - t % 8, tf.float32))
            tf1.summary.scalar("accuracy", 1.0 - err / batch)
    assert _answer(_meta(build)) == (["position_probs:0"], None)


def test_a_domain_that_routes_examples_through_its_own_head_is_an_input():
    """A two-domain regressor: a shared layer, then each example goes through its domain's head
    (gathered by the domain indicator, stitched back); the loss weighs examples by domain and
    pulls the two domains' mean features together (gathered by the indicator too)."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 8], name="features")
        domain = tf1.placeholder(tf.float32, [None, 1], name="domain")
        target = tf1.placeholder(tf.float32, [None, 1], name="target")
        shared = _dense(x, 16, "shared", tf.nn.tanh)
        first = tf.cast(tf.where(domain[:, 0] < 0.5)[:, 0], tf.int32)
        second = tf.cast(tf.where(domain[:, 0] >= 0.5)[:, 0], tf.int32)
        heads = [_dense(tf.gather(shared, idx), 1, name) for idx, name in ((first, "head_a"), (second, "head_b"))]
        out = tf.dynamic_stitch([first, second], heads)
        balance = tf.reduce_sum(tf.square(tf.reduce_mean(tf.gather(shared, first), 0)
                                          - tf.reduce_mean(tf.gather(shared, second), 0)))
        weight = 1.0 + domain
        tf1.train.AdamOptimizer().minimize(tf.reduce_mean(weight * tf.square(target - out)) + balance)
    assert _answer(_meta(build)) == (["DynamicStitch:0"], None)


def test_unshaped_coefficients_beside_shaped_data_are_no_labels():
    """A classifier whose loss adds a per-example penalty on its features and a weight decay, each
    weighed by a placeholder given no shape (a hyperparameter fed on each step): what a coefficient
    multiplies is a loss term, never a prediction, and the terms added to the labelled one are terms."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 10], name="x")
        y = tf1.placeholder(tf.int32, [None], name="y")
        penalty, decay = tf1.placeholder(tf.float32, name="penalty"), tf1.placeholder(tf.float32, name="decay")
        features = _dense(x, 6, "features", tf.nn.relu)
        logits = _dense(features, 3, "classes")
        tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        loss += tf.reduce_mean(penalty * tf.reduce_sum(tf.square(features), 1))
        loss += decay * tf.add_n([tf.nn.l2_loss(v) for v in tf1.trainable_variables()])
        tf1.train.AdamOptimizer().minimize(loss)
    assert _answer(_meta(build)) == (["probs:0"], None)


def test_statistics_of_the_batch_in_an_unlabelled_loss_lead_to_the_model():
    """A decorrelating projection (no labels): the loss takes the projection transposed, examples as
    columns, and makes its covariance (the batch summed away, not a Gram matrix of examples); the
    script fetches the objective, one number of the batch, to watch it. The projection is the output."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 8], name="x")
        projection = _dense(_dense(x, 12, "trunk", tf.nn.relu), 4, "projection")
        columns = tf.transpose(projection)
        centred = columns - tf.reduce_mean(columns, 1, keepdims=True)
        count = tf.cast(tf.shape(x)[0], tf.float32)
        covariance = tf.matmul(centred, centred, transpose_b=True) / (count - 1.0)
        spread = -tf.reduce_sum(tf.linalg.diag_part(covariance))
        decorrelation = tf.reduce_sum(tf.square(covariance - tf.eye(4)))
        objective = decorrelation + spread
        decay = 1e-4 * tf.add_n([tf.nn.l2_loss(v) for v in tf1.trainable_variables()])
        tf1.train.AdamOptimizer().minimize(objective + decay)
        tf.negative(objective)  # (fetched by the script each epoch, to watch it)
    assert _answer(_meta(build)) == (["projection/BiasAdd:0"], None)


def _conv(x, channels, name, activation=None):
    with tf1.variable_scope(name):
        kernel = tf1.get_variable("kernel", [3, 3, x.shape[-1], channels])
        y = tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "SAME")
        return activation(y) if activation else y


def test_a_pyramid_an_unlabelled_loss_reads_at_every_scale_is_answered_by_its_finest_whole():
    """A self-supervised autoencoder of frame pairs (no labels: it reconstructs the pair it is given):
    a coarse estimate upsampled into a fine one, both read by the loss channel by channel (first and
    second frame), and a neighbour-difference penalty the script left unused."""
    def build():
        pair = tf1.placeholder(tf.float32, [None, 16, 16, 2], name="pair")
        clean = tf.identity(pair)
        trunk = _conv(pair, 8, "trunk", tf.nn.relu)
        coarse = _conv(tf.nn.avg_pool2d(trunk, 2, 2, "SAME"), 2, "coarse")
        fine = _conv(tf.concat([trunk, tf.image.resize(coarse, [16, 16])], 3), 2, "fine")
        small = tf.nn.avg_pool2d(clean, 2, 2, "SAME")
        terms = []
        for estimate, target in ((coarse, small), (fine, clean)):
            for k in range(2):  # each frame of the pair, as the loss takes them
                part = tf.expand_dims(estimate[:, :, :, k], 3)
                terms.append(tf.reduce_mean(tf.abs(part - tf.expand_dims(target[:, :, :, k], 3))))
                part[:, 1:, :, :] - part[:, :-1, :, :]  # (a smoothness term the script never added)
        tf1.train.AdamOptimizer().minimize(tf.add_n(terms))
    assert _answer(_meta(build)) == (["fine/Conv2D:0"], None)


def test_a_probability_clipped_for_the_loss_s_logs_is_the_probability():
    """A click model with a hand-written binary cross-entropy on its probability clipped away from 0
    and 1 (``log(p)`` and ``log(1 - p)`` both read the clipped copy); a threshold outside the loss
    decides from the probability itself."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 7], name="impression")
        clicked = tf1.placeholder(tf.float32, [None, 1], name="clicked")
        probability = tf.sigmoid(_dense(_dense(x, 8, "hidden", tf.nn.relu), 1, "score"), name="click_probability")
        tf.cast(probability > 0.5, tf.int32, name="shown")
        p = tf.clip_by_value(probability, 1e-6, 1.0 - 1e-6)
        tf1.train.AdamOptimizer().minimize(
            -tf.reduce_mean(clicked * tf.math.log(p) + (1.0 - clicked) * tf.math.log(1.0 - p)))
    outputs, refused = _answer(_meta(build))
    assert outputs is not None and "click_probability:0" in outputs and not any("clip" in t for t in outputs), \
        (outputs, refused)


def test_labels_one_hot_as_wide_as_the_logits_are_still_the_labels():
    """A classifier with a centre loss: the labels look up each example's class centre (a gather of
    trained centres, as an embedding lookup reads data) and are one-hot encoded as deep as the logits
    are wide (``tf.shape(logits)``): a one-hot that reads the logits' shape holds the labels as given."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 9], name="x")
        y = tf1.placeholder(tf.int32, [None], name="y")
        features = _dense(x, 5, "features", tf.nn.relu)
        logits = _dense(features, 4, "classes")
        tf.nn.softmax(logits, name="probs")
        target = tf.one_hot(y, tf.shape(logits)[1])
        xent = -tf.reduce_mean(tf.reduce_sum(target * tf.nn.log_softmax(logits), 1))
        centres = tf1.get_variable("centres", [4, 5])
        pull = tf.reduce_mean(tf.reduce_sum(tf.square(features - tf.gather(centres, y)), 1))
        tf1.train.AdamOptimizer().minimize(xent + 0.01 * pull)
    assert _answer(_meta(build)) == (["probs:0"], None)


def test_a_class_an_accuracy_casts_to_compare_stays_an_output():
    """The per-example metric rule walks an argmax's index arithmetic (``// w``, ``% w``), not a
    cast: the predicted class a caller fetches is often cast to the labels' type by the accuracy."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        y = tf1.placeholder(tf.int32, [None], name="labels")
        logits = _dense(_dense(x, 8, "hidden", tf.nn.relu), 4, "logits")
        tf.nn.softmax(logits, name="probabilities")
        predicted = tf.argmax(logits, axis=1, name="predicted_class")
        tf.reduce_mean(tf.cast(tf.equal(tf.cast(predicted, tf.int32), y), tf.float32), name="accuracy")
        tf1.train.AdamOptimizer().minimize(
            tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))
    outputs, refused = _answer(_meta(build))
    assert outputs is not None and "predicted_class:0" in outputs, (outputs, refused)


def test_a_batch_size_read_from_one_view_s_shape_is_not_that_view_s_values():
    """Two towers on two views of the same examples, trained to agree (their cross-covariance
    up, each one's own covariance towards the identity), every covariance divided by the batch
    size read from the first tower's shape: that count holds none of the first view's values, so
    the first view is not compared with the second tower as a label would be."""
    def build():
        a = tf1.placeholder(tf.float32, [None, 6], name="audio")
        b = tf1.placeholder(tf.float32, [None, 5], name="video")
        ea = _dense(_dense(a, 8, "audio_net", tf.nn.relu), 3, "audio_out")
        eb = _dense(_dense(b, 8, "video_net", tf.nn.relu), 3, "video_out")
        count = tf.cast(tf.shape(ea)[0], tf.float32)
        ca, cb = ea - tf.reduce_mean(ea, 0), eb - tf.reduce_mean(eb, 0)

        def cov(p, q):
            return tf.matmul(p, q, transpose_a=True) / (count - 1.0)
        agree = -tf.reduce_sum(tf.linalg.diag_part(cov(ca, cb)))
        whiten = tf.reduce_sum(tf.square(cov(ca, ca) - tf.eye(3))) + tf.reduce_sum(tf.square(cov(cb, cb) - tf.eye(3)))
        tf1.train.AdamOptimizer().minimize(agree + whiten)
    outputs, refused = _answer(_meta(build))
    assert outputs is not None and sorted(outputs) == ["audio_out/BiasAdd:0", "video_out/BiasAdd:0"], (outputs, refused)


def test_a_test_tower_settles_the_choice_a_margin_softmax_leaves_open():
    """A speaker-embedding model trained with an additive-margin softmax (the labels enter the
    logits, so the representation or the class scores may be deployed) and, sharing its weights,
    a tower without dropout that no loss reads, built to compare speakers: that tower is what the
    author runs."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 12], name="frames")
        y = tf1.placeholder(tf.int32, [None], name="speaker")
        keep = tf1.placeholder_with_default(1.0, [], name="keep_prob")

        def tower(dropout):
            h = _dense(x, 16, "encoder", tf.nn.relu)
            h = tf1.nn.dropout(h, keep_prob=keep) if dropout else h
            return tf.nn.l2_normalize(_dense(h, 8, "projection"), 1)
        emb = tower(dropout=True)
        centres = tf.nn.l2_normalize(tf1.get_variable("speaker_centres", [8, 5]), 0)
        cos = tf.matmul(emb, centres)
        logits = 30.0 * (cos - 0.2 * tf.one_hot(y, 5))
        tf1.train.AdamOptimizer().minimize(
            tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))
        tf.identity(tower(dropout=False), name="speaker_embedding")
    assert _answer(_meta(build)) == (["speaker_embedding:0"], None)


def test_steps_of_an_unrolled_forecast_it_does_not_collect_are_by_products():
    """A sensor forecaster unrolled in Python: a training unroll (teacher forcing) under the loss,
    and a prediction unroll that conditions on the past, where each step's estimate is a sink, then
    feeds its own estimate back over the horizon, whose steps ``horizon`` stacks."""
    def cell(inp, state):
        with tf1.variable_scope("cell", reuse=tf1.AUTO_REUSE):
            state = tf.tanh(_dense(tf.concat([inp, state], 1), 6, "recurrent"))
            return _dense(state, 1, "estimate"), state

    def build():
        past = tf1.placeholder(tf.float32, [None, 5], name="past")
        target = tf1.placeholder(tf.float32, [None, 5], name="target")
        state, estimates = tf.zeros([tf.shape(past)[0], 6]), []
        for t in range(5):
            with tf1.name_scope("train_step"):
                estimate, state = cell(past[:, t:t + 1], state)
                estimates.append(estimate)
        tf1.train.AdamOptimizer().minimize(tf.reduce_mean(tf.square(tf.concat(estimates, 1) - target)))
        state = tf.zeros([tf.shape(past)[0], 6])
        for t in range(5):  # conditioning: each step's estimate is computed and left unused
            with tf1.name_scope("predict_step"):
                _, state = cell(past[:, t:t + 1], state)
        previous, horizon = past[:, 4:5], []
        for t in range(3):
            with tf1.name_scope("predict_step"):
                previous, state = cell(previous, state)
                horizon.append(previous)
        tf.concat(horizon, 1, name="horizon")
    assert _answer(_meta(build)) == (["horizon:0"], None)
