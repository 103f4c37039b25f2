"""Principles from the thirteenth trial's fine-tuning and collection cases (issues 33 and 34).

- A second ``minimize`` after ``import_meta_graph`` builds its gradients in the same
  ``gradients/`` scope, where TensorFlow names the seed ``grad_ys_0_1``: it is a loss too.
- A network that reads another's features (not its predictions) and is compared with labels
  the user feeds may be a new head trained on a trunk (fine-tuning), not a critic: the two stand
  side by side, and a freeze without names asks which.
- A collection taken by its size alone (its name says neither outputs nor inputs) that holds
  the training op lists what a training script resumes with (X, y, the accuracy, the step),
  not what the model is deployed for.

Each fixture is a small graph written for the principle."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402

tf1 = tf.compat.v1
_meta, _dense, _answer = principle_graphs.meta, principle_graphs.dense, principle_graphs.answer


def _base():
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int32, [None], name="y")
    hidden = _dense(x, 8, "trunk", tf.nn.relu)
    logits = _dense(hidden, 3, "head")
    tf.nn.softmax(logits, name="probabilities")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return hidden, tf1.train.AdamOptimizer().minimize(loss)


def _new_head(hidden, trunk_too: bool):
    labels = tf1.placeholder(tf.int32, [None], name="new_labels")
    features = hidden if trunk_too else tf.stop_gradient(hidden)
    logits = _dense(features, 2, "new_head")
    tf.nn.softmax(logits, name="new_probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    tf1.train.GradientDescentOptimizer(0.1).minimize(
        loss, var_list=None if trunk_too else tf1.trainable_variables("new_head"))


def test_a_head_trained_on_an_imported_trunk_is_seen_and_the_freeze_asks():
    base = _meta(lambda: _base())
    g = tf.Graph()
    with g.as_default():
        tf1.train.import_meta_graph(base)
        _new_head(g.get_tensor_by_name("trunk/Relu:0"), trunk_too=False)
        seeds = [n.name for n in g.as_graph_def().node if "grad_ys" in n.name and n.op == "Fill"]
        meta = tf1.train.export_meta_graph(graph=g)
    assert "gradients/grad_ys_0_1" in seeds, seeds  # (the case: two calls in one scope)
    outputs, refused = _answer(meta)
    assert outputs is None, outputs
    assert "new_probs:0" in refused[1] and "probabilities:0" in refused[1], refused


def test_a_new_head_on_features_with_labels_of_its_own_is_no_critic():
    def build():
        hidden, _ = _base()
        _new_head(hidden, trunk_too=False)
    outputs, refused = _answer(_meta(build))
    assert outputs is None, outputs
    assert "several networks are trained by different optimizers" in refused[0], refused[0]
    assert "new_probs:0" in refused[1] and "probabilities:0" in refused[1], refused


def test_a_collection_holding_the_training_op_names_no_outputs():
    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="X")
        y = tf1.placeholder(tf.int64, [None], name="y")
        logits = _dense(_dense(x, 8, "hidden", tf.nn.relu), 3, "outputs")
        tf.nn.softmax(logits, name="Y_proba")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        training_op = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)
        accuracy = tf.reduce_mean(tf.cast(tf1.nn.in_top_k(logits, y, 1), tf.float32), name="accuracy")
        for op in (x, y, accuracy, training_op):
            tf1.add_to_collection("my_important_ops", op)
    assert _answer(_meta(build)) == (["Y_proba:0"], None)


def test_a_collection_holding_the_loss_names_no_outputs():
    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="X")
        y = tf1.placeholder(tf.int64, [None], name="y")
        logits = _dense(_dense(x, 8, "hidden", tf.nn.relu), 3, "outputs")
        tf.nn.softmax(logits, name="Y_proba")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), name="loss")
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss)
        tf1.add_to_collection("loss", loss)
    assert _answer(_meta(build)) == (["Y_proba:0"], None)


def _classifier_with(collections):
    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        y = tf1.placeholder(tf.int64, [None], name="y")
        logits = _dense(_dense(x, 8, "hidden", tf.nn.relu), 3, "out")
        probs = tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), name="loss")
        train_op = tf1.train.AdamOptimizer().minimize(loss)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(probs, 1), y), tf.float32), name="accuracy")
        named = {"x": x, "y": y, "loss": loss, "accuracy": accuracy, "train_op": train_op, "probs": probs}
        for key, what in collections:
            tf1.add_to_collection(key, named[what])
    return _meta(build)


def test_what_compares_the_model_with_its_labels_is_no_output_whichever_collection_lists_it():
    """Trial 14 (finding 1): one collection per tensor, tutorial style ('x', 'y', 'accuracy', 'loss',
    'train_op'), froze the accuracy as the output with the labels as an input; 'model_probs' beside
    'model_acc' froze both."""
    one_each = [(k, k) for k in ("x", "y", "loss", "accuracy", "train_op")]
    assert _answer(_classifier_with(one_each)) == (["probs:0"], None)
    assert _answer(_classifier_with([("model_probs", "probs"), ("model_acc", "accuracy")])) == (["probs:0"], None)
