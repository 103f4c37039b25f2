"""A corpus of real architectures, written the way TF1 users wrote them.

Each model comes from code the project did not write (tf-slim nets from PyPI's
``tf-slim``, Keras applications from ``tf-keras``, TensorFlow's own RNN cells and
``while_loop``), built in graph mode with random weights, trained for two steps
with an optimizer, update ops and summaries, and saved with ``tf.train.Saver``.
Every model uses a different style of training switch: a python bool, a
``placeholder`` that must be fed, a ``placeholder_with_default``, or Keras'
learning phase.

Run as a script, one model per process (Keras and tf-slim each set global state):

    python tests/corpus.py NAME OUT_DIR

which writes the checkpoint into OUT_DIR with ``corpus.json`` (what a user of that
model wants frozen: outputs, data inputs) and ``io.npz`` (fixed inputs and the
original model's outputs on them, computed by restoring the checkpoint into the
training graph). Tests build the corpus once and keep it in pytest's cache.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from typing import Dict

import numpy as np

CLASSIFIERS = ["slim_resnet_v1", "slim_resnet_v2", "slim_inception_v1", "slim_inception_v3",
               "keras_mobilenet", "keras_mobilenet_v2", "lstm_classifier", "seq2seq_greedy"]
# The other kinds (tests/corpus_kinds.py): metric learning, generative, tables, tf.data, ...
MODELS = CLASSIFIERS + ["siamese_contrastive", "triplet_embedding", "vae", "gan_with_sampler", "gan_plain",
                        "text_vocab_table", "dataset_fed", "two_heads", "detector_nms", "ctc_decoder", "replicas",
                        "distillation", "fixed_feature_loss", "keras_regnet", "keras_efficientnet",
                        "batch_hard_triplet"]
# Models whose deployed outputs the graph does not decide: a refusal listing them is right.
UNDECIDABLE = set()  # (gan_plain was, until the critic principle: its discriminator scores the generator)


def fingerprint() -> str:
    """Changes whenever the corpus' code does: the cache key of a built corpus."""
    digest = hashlib.sha256()
    for path in (__file__, os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_kinds.py")):
        with open(path, "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()[:16]


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # Keras 3 has no graph mode; tf-keras is Keras 2
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    tf.compat.v1.disable_v2_behavior()
    return tf, tf.compat.v1


def _slim():
    """tf-slim 1.1.0 reaches TensorFlow's layers, which look for tf-keras' legacy
    layers under their pre-2.16 module name; alias it, as users of tf-slim do."""
    import tf_keras.src.legacy_tf_layers as legacy
    sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy)
    for sub in ("base", "convolutional", "core", "normalization", "pooling", "variable_scope_shim"):
        sys.modules.setdefault("tf_keras.legacy_tf_layers." + sub,
                               importlib.import_module("tf_keras.src.legacy_tf_layers." + sub))
    import tf_slim
    return tf_slim


def _train_and_save(tf1, sess, saver, train_op, train_feed, out_dir, steps=2, summaries=None):
    sess.run(tf1.global_variables_initializer())
    sess.run(tf1.local_variables_initializer())
    writer = tf1.summary.FileWriter(out_dir)  # event files beside the checkpoint, as users have them
    for step in range(steps):
        fetched = sess.run([train_op] + ([summaries] if summaries is not None else []), feed_dict=train_feed)
        if summaries is not None:
            writer.add_summary(fetched[1], step)
    writer.close()
    return saver.save(sess, os.path.join(out_dir, "model.ckpt"), global_step=steps)


def _record(tf1, graph, prefix, out_dir, outputs, inputs, feeds, infer_feed=None, note="", tables=False,
            session_names=None):
    """Restore into the training graph and record the outputs on fixed inputs. ``feeds``
    are keyed by the frozen graph's input names; ``session_names`` maps those that differ
    in the training graph (an iterator's outputs); ``tables``: initialise lookup tables."""
    with graph.as_default(), tf1.Session(graph=graph) as sess:
        saver = tf1.train.Saver()
        saver.restore(sess, prefix)
        if tables:
            sess.run(tf1.tables_initializer())
        feed = {(session_names or {}).get(k, k): v for k, v in feeds.items()}
        feed.update(infer_feed or {})
        values = sess.run(outputs, feed_dict=feed)
    np.savez(os.path.join(out_dir, "io.npz"),
             **{"in:" + k: v for k, v in feeds.items()}, **{"out:" + k: v for k, v in zip(outputs, values)})
    with open(os.path.join(out_dir, "corpus.json"), "w") as fh:
        json.dump({"outputs": outputs, "inputs": sorted(feeds), "prefix": os.path.basename(prefix),
                   "note": note, "session_names": session_names or {}}, fh, indent=1)


def _images(rng, n, size):
    return rng.standard_normal((n, size, size, 3)).astype(np.float32)


def _slim_classifier(name, out_dir, net_fn, arg_scope, size, optimizer, switch, loss="softmax", extra_loss=None):
    """A tf-slim image classifier trained with ``slim.learning.create_train_op``."""
    tf, tf1 = _tf()
    slim = _slim()
    rng = np.random.default_rng(7)
    graph = tf.Graph()
    with graph.as_default():
        images = tf1.placeholder(tf.float32, [None, size, size, 3], name="images")
        labels = tf1.placeholder(tf.int64, [None], name="labels")
        is_training, train_feed, infer_feed = switch(tf, tf1)
        with slim.arg_scope(arg_scope()):
            logits, end_points = net_fn(images, is_training)
        if loss == "softmax":
            tf1.losses.softmax_cross_entropy(tf.one_hot(labels, 5), logits)
        else:
            tf1.losses.sparse_softmax_cross_entropy(labels, logits)
        if extra_loss:
            extra_loss(tf, tf1, end_points, labels)
        total = tf1.losses.get_total_loss()
        tf1.summary.scalar("total_loss", total)
        for k, v in list(end_points.items())[:3]:
            tf1.summary.histogram("activations/" + k, v)
        global_step = tf1.train.get_or_create_global_step()
        train_op = slim.learning.create_train_op(total, optimizer(tf1), global_step=global_step)
        summaries = tf1.summary.merge_all()
        saver = tf1.train.Saver()
        feed = {images: _images(rng, 4, size), labels: rng.integers(0, 5, 4)}
        feed.update(train_feed)
        with tf1.Session() as sess:
            prefix = _train_and_save(tf1, sess, saver, train_op, feed, out_dir, summaries=summaries)
        predictions = end_points.get("Predictions", end_points.get("predictions"))
    outputs = [predictions.name]
    _record(tf1, graph, prefix, out_dir, outputs, [images.name], {images.name: _images(rng, 2, size)},
            infer_feed, note=name)


def _bool_placeholder(tf, tf1):
    t = tf1.placeholder(tf.bool, [], name="is_training")
    return t, {t: True}, {t: False}


def _python_false(tf, tf1):
    """Fine-tuning with batch norm frozen: ``is_training=False`` as a python bool."""
    return False, {}, {}


def _with_default(name, default):
    def make(tf, tf1):
        t = tf1.placeholder_with_default(default, [], name=name)
        return t, {t: True}, {}
    return make


def slim_resnet_v1(out_dir):
    import tensorflow as tf
    from tf_slim.nets import resnet_v1
    blocks = [resnet_v1.resnet_v1_block("block1", base_depth=8, num_units=2, stride=2),
              resnet_v1.resnet_v1_block("block2", base_depth=16, num_units=2, stride=2),
              resnet_v1.resnet_v1_block("block3", base_depth=32, num_units=2, stride=1)]

    def net(images, is_training):
        net, end_points = resnet_v1.resnet_v1(images, blocks, num_classes=5, is_training=is_training,
                                              scope="resnet_v1_small")
        return tf.squeeze(net, [1, 2], name="logits"), end_points  # as resnet_v1_50() does
    _slim_classifier("slim_resnet_v1", out_dir, net, resnet_v1.resnet_arg_scope, 32,
                     lambda tf1: tf1.train.MomentumOptimizer(0.01, 0.9), _bool_placeholder)


def slim_resnet_v2(out_dir):
    import tensorflow as tf
    from tf_slim.nets import resnet_v2
    blocks = [resnet_v2.resnet_v2_block("block1", base_depth=8, num_units=2, stride=2),
              resnet_v2.resnet_v2_block("block2", base_depth=16, num_units=2, stride=1)]

    def net(images, is_training):
        net, end_points = resnet_v2.resnet_v2(images, blocks, num_classes=5, is_training=is_training,
                                              scope="resnet_v2_small")
        return tf.squeeze(net, [1, 2], name="logits"), end_points
    _slim_classifier("slim_resnet_v2", out_dir, net, resnet_v2.resnet_arg_scope, 32,
                     lambda tf1: tf1.train.AdamOptimizer(1e-3), _python_false, loss="sparse")


def slim_inception_v1(out_dir):
    from tf_slim.nets import inception_v1

    def net(images, is_training):
        return inception_v1.inception_v1(images, num_classes=5, is_training=is_training)
    _slim_classifier("slim_inception_v1", out_dir, net, inception_v1.inception_v1_arg_scope, 224,
                     lambda tf1: tf1.train.RMSPropOptimizer(1e-3), _with_default("is_training", False))


def slim_inception_v3(out_dir):
    from tf_slim.nets import inception_v3

    def net(images, is_training):
        return inception_v3.inception_v3(images, num_classes=5, is_training=is_training,
                                         depth_multiplier=0.25, min_depth=8)

    def aux_loss(tf, tf1, end_points, labels):  # as slim's train_image_classifier does
        tf1.losses.softmax_cross_entropy(tf.one_hot(labels, 5), end_points["AuxLogits"], weights=0.4,
                                         scope="aux_loss")
    _slim_classifier("slim_inception_v3", out_dir, net, inception_v3.inception_v3_arg_scope, 128,
                     lambda tf1: tf1.train.GradientDescentOptimizer(0.01), _with_default("phase_train", False),
                     extra_loss=aux_loss)


def _keras_app(out_dir, build, loss, optimizer, labels_fn):
    tf, tf1 = _tf()
    import tf_keras as keras
    rng = np.random.default_rng(11)
    keras.backend.clear_session()
    keras.utils.set_random_seed(11)  # the same weights at every build: the corpus is a fixture, not a lottery
    sess = tf1.keras.backend.get_session()
    model = build(keras)
    model.compile(optimizer=optimizer(keras), loss=loss, metrics=["accuracy"])
    x = _images(rng, 4, 32)
    model.fit(x, labels_fn(rng, 4), batch_size=2, epochs=1, verbose=0)
    graph = sess.graph
    with graph.as_default():
        tf1.summary.scalar("weights_norm", tf.linalg.global_norm(model.trainable_weights))
        saver = tf1.train.Saver()
        prefix = saver.save(sess, os.path.join(out_dir, "model.ckpt"), global_step=2)
    outputs = [model.output.name]
    _record(tf1, graph, prefix, out_dir, outputs, [model.input.name], {model.input.name: _images(rng, 2, 32)})


def keras_mobilenet(out_dir):
    _keras_app(out_dir, lambda keras: keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=5),
        "categorical_crossentropy", lambda keras: keras.optimizers.legacy.Adam(1e-3),
        lambda rng, n: np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)])


def keras_mobilenet_v2(out_dir):
    _keras_app(out_dir, lambda keras: keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=5),
        "sparse_categorical_crossentropy", lambda keras: keras.optimizers.legacy.SGD(0.01, momentum=0.9),
        lambda rng, n: rng.integers(0, 5, n))


def lstm_classifier(out_dir):
    """A TF1 text classifier: embeddings, dynamic_rnn over an LSTMCell with
    sequence lengths, dropout by keep_prob, a dense head, accuracy."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(3)
    vocab, steps, classes = 50, 12, 4
    graph = tf.Graph()
    with graph.as_default():
        tokens = tf1.placeholder(tf.int32, [None, steps], name="tokens")
        lengths = tf1.placeholder(tf.int32, [None], name="lengths")
        labels = tf1.placeholder(tf.int32, [None], name="labels")
        keep_prob = tf1.placeholder_with_default(1.0, [], name="keep_prob")
        embedding = tf1.get_variable("embedding", [vocab, 16])
        embedded = tf.nn.embedding_lookup(embedding, tokens)
        cell = tf1.nn.rnn_cell.DropoutWrapper(tf1.nn.rnn_cell.LSTMCell(24), output_keep_prob=keep_prob)
        _, state = tf1.nn.dynamic_rnn(cell, embedded, sequence_length=lengths, dtype=tf.float32)
        logits = tf1.layers.dense(state.h, classes, name="logits")
        probabilities = tf.nn.softmax(logits, name="probabilities")
        predicted = tf.argmax(logits, axis=1, name="predicted_class")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.cast(predicted, tf.int32), labels), tf.float32))
        tf1.summary.scalar("loss", loss)
        tf1.summary.scalar("accuracy", accuracy)
        global_step = tf1.train.get_or_create_global_step()
        train_op = tf1.train.AdamOptimizer(1e-2).minimize(loss, global_step=global_step)
        summaries = tf1.summary.merge_all()
        saver = tf1.train.Saver()
        feed = {tokens: rng.integers(0, vocab, (8, steps)), lengths: rng.integers(3, steps + 1, 8),
                labels: rng.integers(0, classes, 8), keep_prob: 0.7}
        with tf1.Session() as sess:
            prefix = _train_and_save(tf1, sess, saver, train_op, feed, out_dir, summaries=summaries)
    feeds = {tokens.name: rng.integers(0, vocab, (3, steps)).astype(np.int32),
             lengths.name: np.array([12, 5, 8], np.int32)}
    _record(tf1, graph, prefix, out_dir, [probabilities.name, predicted.name],
            [tokens.name, lengths.name], feeds)


def seq2seq_greedy(out_dir):
    """An encoder-decoder: GRU encoder, a teacher-forced decoder for the loss, and
    greedy decoding in a ``while_loop`` (control flow v2, resource variables) that
    looks up the embedding of the previous token inside the loop body."""
    tf, tf1 = _tf()
    tf1.enable_control_flow_v2()
    tf1.enable_resource_variables()
    rng = np.random.default_rng(5)
    vocab, src_len, tgt_len, units, go = 30, 7, 6, 20, 1
    graph = tf.Graph()
    with graph.as_default():
        source = tf1.placeholder(tf.int32, [None, src_len], name="source")
        source_len = tf1.placeholder(tf.int32, [None], name="source_len")
        target_in = tf1.placeholder(tf.int32, [None, tgt_len], name="target_in")
        target_out = tf1.placeholder(tf.int32, [None, tgt_len], name="target_out")
        with tf1.variable_scope("encoder"):
            src_emb = tf1.get_variable("embedding", [vocab, 12])
            _, enc_state = tf1.nn.dynamic_rnn(tf1.nn.rnn_cell.GRUCell(units), tf.nn.embedding_lookup(src_emb, source),
                                              sequence_length=source_len, dtype=tf.float32)
        with tf1.variable_scope("decoder") as scope:
            tgt_emb = tf1.get_variable("embedding", [vocab, 12])
            cell = tf1.nn.rnn_cell.GRUCell(units)
            projection = tf1.layers.Dense(vocab, name="projection")
            dec_out, _ = tf1.nn.dynamic_rnn(cell, tf.nn.embedding_lookup(tgt_emb, target_in),
                                            initial_state=enc_state, scope=scope)
            train_logits = projection(dec_out)
        loss = tf1.losses.sparse_softmax_cross_entropy(target_out, train_logits)
        tf1.summary.scalar("loss", loss)

        with tf1.variable_scope("decoder", reuse=True) as scope:
            batch = tf.shape(source)[0]

            def body(t, previous, state, ids):
                emb = tf.nn.embedding_lookup(tgt_emb, previous)
                with tf1.variable_scope(scope, reuse=True):
                    out, state = cell(emb, state)
                step_ids = tf.argmax(projection(out), axis=-1, output_type=tf.int32)
                return t + 1, step_ids, state, ids.write(t, step_ids)

            _, _, _, ids = tf.while_loop(
                lambda t, *_: t < tgt_len, body,
                [tf.constant(0), tf.fill([batch], go), enc_state, tf.TensorArray(tf.int32, size=tgt_len)])
            decoded = tf.transpose(ids.stack(), [1, 0])
        global_step = tf1.train.get_or_create_global_step()
        train_op = tf1.train.AdamOptimizer(1e-2).minimize(loss, global_step=global_step)
        summaries = tf1.summary.merge_all()
        saver = tf1.train.Saver()
        feed = {source: rng.integers(2, vocab, (4, src_len)), source_len: rng.integers(2, src_len + 1, 4),
                target_in: rng.integers(2, vocab, (4, tgt_len)), target_out: rng.integers(2, vocab, (4, tgt_len))}
        with tf1.Session() as sess:
            prefix = _train_and_save(tf1, sess, saver, train_op, feed, out_dir, summaries=summaries)
    feeds = {source.name: rng.integers(2, vocab, (2, src_len)).astype(np.int32),
             source_len.name: np.array([7, 4], np.int32)}
    _record(tf1, graph, prefix, out_dir, [decoded.name], [source.name, source_len.name], feeds)


def build_all(root: str, python: str = sys.executable, workers: int = 2) -> Dict[str, dict]:
    """Build every model not yet under ``root`` (one process each, ``workers`` at a
    time; a model's folder appears only once complete) and load them all."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def build(name):
        out = os.path.join(root, name)
        if os.path.exists(os.path.join(out, "corpus.json")):
            return None
        tmp = out + ".building"
        subprocess.run(["rm", "-rf", tmp, out], check=True)
        proc = subprocess.run([python, os.path.abspath(__file__), name, tmp], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            return "%s:\n%s" % (name, proc.stderr[-3000:])
        os.rename(tmp, out)
        return None

    os.makedirs(root, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:
        failures = [err for err in pool.map(build, MODELS) if err]
    if failures:
        raise RuntimeError("building the corpus failed:\n" + "\n\n".join(failures))
    return {name: load(os.path.join(root, name)) for name in MODELS}


def default_root() -> str:
    """build/corpus-<builder fingerprint>-tf<version> in the repository (git-ignored)."""
    from importlib.metadata import version
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, "build", "corpus-%s-tf%s" % (fingerprint(), version("tensorflow-cpu")))


def load(out_dir: str) -> dict:
    """What a built model's folder says: outputs, inputs, feeds, expected values."""
    with open(os.path.join(out_dir, "corpus.json")) as fh:
        info = json.load(fh)
    with np.load(os.path.join(out_dir, "io.npz")) as data:
        info["feeds"] = {k[3:]: data[k] for k in data.files if k.startswith("in:")}
        info["expected"] = {k[4:]: data[k] for k in data.files if k.startswith("out:")}
    info["dir"] = out_dir
    return info


if __name__ == "__main__":
    name, out = sys.argv[1], sys.argv[2]
    if name not in MODELS:
        sys.exit("unknown model %r; one of %s" % (name, ", ".join(MODELS)))
    os.makedirs(out, exist_ok=True)
    if name in CLASSIFIERS:
        globals()[name](out)
    else:
        import corpus_kinds
        getattr(corpus_kinds, name)(out)
