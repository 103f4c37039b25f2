"""Principles restated after the second round of model kinds nobody had tried (issue 33): a
size fed through placeholder_with_default is a feed, never bounded as a constant before import
(a flow's sample count, a few-shot episode's number of classes); tf.custom_gradient's leftover
copy beside its IdentityN (tf.nn.silu in graph mode) is never an output."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tffreeze_server.core import bounds, resolve  # noqa: E402

tf1 = tf.compat.v1


def _graph(build):
    g = tf.Graph()
    with g.as_default():
        build()
    return g


def _meta(build):
    g = tf.Graph()
    with g.as_default():
        build()
        return g, tf1.train.export_meta_graph(graph=g)


def test_a_size_fed_through_placeholder_with_default_is_not_bounded_as_a_constant():
    def build():
        n = tf1.placeholder_with_default(16, [], name="n_samples")
        tf1.random_normal(tf.stack([n, 2]), name="z")
        k = tf1.placeholder_with_default(3, [], name="n_way")
        tf.one_hot(tf1.placeholder(tf.int32, [None], name="y"), k * 1000000, name="onehot")
    bounds.check_import_constants(_graph(build).as_graph_def(), 256 << 20)  # no MEMORY_LIMIT refusal


def _silu_tower():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    y = tf1.placeholder(tf.float32, [None, 2], name="y")
    w = tf1.get_variable("w", [3, 2])
    pred = tf.matmul(x, w, name="pred")
    tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(pred - y), name="loss"))
    serve_x = tf1.placeholder(tf.float32, [None, 3], name="serve_x")
    tf.identity(tf.nn.silu(tf.matmul(serve_x, w)) * 2.0, name="served")


def test_the_copy_custom_gradient_leaves_beside_its_identity_n_is_no_output():
    g, meta = _meta(_silu_tower)
    graph_def = g.as_graph_def()
    copies = [n.name for n in graph_def.node if n.op == "Identity" and any(
        m.op == "IdentityN" and n.input[0].split(":")[0] in [i.split(":")[0] for i in m.input] for m in graph_def.node)]
    assert copies, "tf.nn.silu left no copy beside an IdentityN: the fixture no longer shows the pattern"
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["served:0"]


def _v1_sampling_loop():
    """A language model's generation loop (control flow v1): each step appends the next token to
    the sequence it hands the next iteration (a concat only NextIteration reads)."""
    tf1.disable_control_flow_v2()
    try:
        tokens = tf1.placeholder(tf.int32, [None, 3], name="tokens")
        emb = tf1.get_variable("emb", [5, 4])
        out_w = tf1.get_variable("out_w", [4, 5])
        logits = tf.matmul(tf.reduce_mean(tf.gather(emb, tokens[:, :-1]), 1), out_w)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tokens[:, -1], logits=logits),
                              name="loss")
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss)
        prompt = tf1.placeholder(tf.int32, [None, 1], name="prompt")

        def body(i, seq):
            nxt = tf.argmax(tf.matmul(tf.reduce_mean(tf.gather(emb, seq), 1), out_w), 1, output_type=tf.int32)
            return i + 1, tf.concat([seq, nxt[:, None]], 1)
        _, seq = tf1.while_loop(lambda i, s: i < 3, body, [tf.constant(0), prompt],
                                shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None])])
        tf.identity(seq, name="generated")
    finally:
        tf1.enable_control_flow_v2()


def test_what_a_loop_body_hands_its_next_iteration_is_no_end():
    g, meta = _meta(_v1_sampling_loop)
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["generated:0"]
