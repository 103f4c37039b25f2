"""A generator of training graphs with known answers (issue 33, "Without names:
generality you can measure").

A combination picks one variant of each part kind (``KINDS``): how data enters,
the trunk, a training switch, the head (with its post-processing), extra loss
terms, a decoding or sampling loop, a frozen sub-network and the optimiser(s).
``build`` writes it as a TF1 training graph (tf.compat.v1, a few tiny variables,
trained one step, saved with ``tf.compat.v1.train.Saver``) and returns the known
answer: the tensors a user deploys (the head's final outputs after its
post-processing, plus the loop's output when there is a loop) and the data inputs
(never labels, training switches or the placeholders that only feed a dataset).
``grade`` compares what a freeze without names did with that answer.

Conventions of the known answer: a classifier deploys its probabilities (softmax or
sigmoid), not the logits its loss reads; a post-processed head deploys the end of
its post-processing (argmax classes; top_k values and indices; NMS-selected boxes
and scores; the pixel-shuffled or clipped image); several heads deploy each one;
a decoding loop or sampler is deployed beside the head (the model predicts and
generates); auxiliary heads, pre-training heads kept beside a fine-tuning head, a
teacher, a loss network and a GAN discriminator are never deployed. With a
pre-training head kept, the optimiser(s) train the fine-tuning head only.

The split (fixed, documented in the README): every part kind lists its variants
in a fixed order; a variant with an EVEN index belongs to the "tune" half, one
with an ODD index to the "held-out" half. A combination of the tune half takes
every part from tune variants, one of the held-out half every part from held-out
variants, so no held-out combination shares a single variant with the tune half
(every part *family* -- dense, conv, LSTM, GRU, attention, graph; softmax, NMS,
pixel shuffle...; GAN, split optimisers... -- has a variant on each side, built
differently). Rules are written and tuned against the tune half only; results
are reported on the held-out half. ``sample(half, n, seed)`` draws distinct
combinations with ``random.Random("%s-%s" % (seed, half))``.

Verdicts (``grade``):
  right          the freeze succeeded; its outputs are exactly the deployed tensors and its
                 inputs exactly the data inputs (as sets);
  refused_right  OUTPUTS_AMBIGUOUS or NO_OUTPUTS_FOUND whose candidate list holds every
                 deployed tensor among its first max(3, number deployed) entries;
  refused_other  one of those refusals without the right candidates there;
  wrong          the freeze succeeded (exit 0) with other outputs or inputs;
  crash          any other error (GRAPH_UNSUPPORTED, INTERNAL, TRAINING_OP_NEEDED, ...).
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf.get_logger().setLevel("ERROR")

HALVES = ("tune", "heldout")
# Part kinds and their variants, in a fixed order: even index = tune, odd = held-out.
KINDS: Dict[str, Tuple[str, ...]] = {
    "input": ("placeholder", "one_shot_dataset", "initializable_dataset", "uint8_placeholder"),
    "trunk": ("dense", "dense_residual", "conv2d", "conv_depthwise", "lstm_while", "lstm_static",
              "gru_static", "gru_while", "attention", "attention_multihead", "graph_segment_sum",
              "graph_sparse_matmul"),
    "switch": ("none", "none", "dropout_default", "batchnorm_placeholder", "batchnorm_default",
               "keep_prob_default"),
    "head": ("softmax", "sigmoid", "regression", "regression_clip", "policy_value", "multitask",
             "argmax", "top_k", "nms", "pixel_shuffle", "pixel_shuffle_clip", "nms_threshold"),
    "extra": ("none", "l2", "entropy_bonus", "aux_head", "pretrain_classifier", "entropy_l2", "aux_head_l2",
              "pretrain_reconstruction"),
    "loop": ("none", "none", "greedy_while", "sampler", "sampler_temperature", "greedy_while_early_stop"),
    "frozen": ("none", "none", "teacher", "loss_network", "loss_network", "teacher"),
    "loss_scope": ("top_level", "top_level", "inside_part_scope", "loss_name_scope"),
    "optimizer": ("sgd", "adam", "split_sgd_adam", "gan_adam", "momentum_decay", "split_rmsprop_adagrad",
                  "gan_sgd", "adam_clipped"),
}
ORDER = tuple(KINDS)

B = 4  # batch (nodes for the graph trunks)
FEAT = 8  # trunk features


def half_of(index: int) -> str:
    return HALVES[index % 2]


@dataclass(frozen=True)
class Combo:
    parts: Tuple[Tuple[str, int], ...]  # (kind, variant index) in ORDER

    @property
    def half(self) -> str:
        halves = {half_of(i) for _, i in self.parts}
        return halves.pop() if len(halves) == 1 else "mixed"

    def variant(self, kind: str) -> str:
        return KINDS[kind][dict(self.parts)[kind]]

    @property
    def name(self) -> str:
        return ",".join("%s=%s" % (k, KINDS[k][i]) for k, i in self.parts)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.name.encode() + repr(self.parts).encode()).hexdigest()[:12]

    @staticmethod
    def of(**variants) -> "Combo":
        """A combination from variant names (the first index of that name in the given half is not
        guessed: pass ``kind=(name, index)`` or ``kind=index`` to be exact; a bare name takes its first index)."""
        parts = []
        for kind in ORDER:
            v = variants.get(kind, 0)
            if isinstance(v, str):
                v = KINDS[kind].index(v)
            elif isinstance(v, tuple):
                v = v[1]
            parts.append((kind, v))
        return Combo(tuple(parts))


def sample(half: str, n: int, seed: int = 33) -> List[Combo]:
    """``n`` distinct combinations of ``half``, drawn with a fixed seed (the same list every run)."""
    rng = random.Random("%s-%s" % (seed, half))
    parity = HALVES.index(half)
    choices = {k: [i for i in range(len(v)) if i % 2 == parity] for k, v in KINDS.items()}
    seen, out = set(), []
    while len(out) < n:
        c = Combo(tuple((k, rng.choice(choices[k])) for k in ORDER))
        if c.name in seen:  # "none" twice in a kind gives equal combinations; keep them distinct
            continue
        seen.add(c.name)
        out.append(c)
    return out


@dataclass
class Answer:
    combo: Combo
    directory: str
    outputs: List[str]
    inputs: List[str]
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# building

class _Builder:
    """State shared by the parts while one combination is built."""

    def __init__(self, combo: Combo):
        self.combo = combo
        self.rng = np.random.RandomState(int(combo.key[:8], 16) % (2 ** 31))
        self.groups: Dict[str, list] = {}
        self.feeds: Dict[object, np.ndarray] = {}  # placeholder tensor -> value for the training step
        self.data_inputs: List[str] = []
        self.labels: Dict[str, tf.Tensor] = {}
        self.losses: List[tf.Tensor] = []
        self.deploy: List[tf.Tensor] = []
        self.update_ops: List[tf.Operation] = []
        self.train_ops: List[tf.Operation] = []
        self.is_training = None

    def var(self, name, shape, group, trainable=True, scale=0.3, value=None):
        init = value if value is not None else (self.rng.randn(*shape) * scale).astype(np.float32)
        v = tf1.get_variable(name, initializer=tf.constant(init), trainable=trainable)
        self.add(group, v)
        return v

    def loss_scope(self):
        """Where loss terms are built (the loss_scope part): at the top level, inside the
        scope of the part that adds them (the head's), or in one name scope "loss/"."""
        kind = self.combo.variant("loss_scope")
        if kind == "top_level":
            return tf1.get_default_graph().name_scope("")
        if kind == "loss_name_scope":
            return tf1.get_default_graph().name_scope("loss/")
        import contextlib
        return contextlib.nullcontext()

    def loss(self, make):
        with self.loss_scope():
            self.losses.append(make())

    def add(self, group, *variables):
        """Remember variables by group (once each, by name: reused scopes return them again)."""
        known = {v.name for v in self.groups.get(group, [])}
        self.groups.setdefault(group, []).extend(v for v in variables if v.name not in known)

    def dense(self, x, n, name, group, act=None, trainable=True, bias=None):
        """A dense layer; a bias only on the head's layers (fewer variables: a smaller graph to build)."""
        w = self.var(name + "/kernel", [int(x.shape[-1]), n], group, trainable)
        y = tf.matmul(x, w)
        if bias if bias is not None else group == "head":
            y = tf.nn.bias_add(y, self.var(name + "/bias", [n], group, trainable, scale=0.05))
        return act(y) if act is not None else y


# -- data: what each trunk reads, and the labels each part needs ------------------------------

def _data_specs(trunk: str):
    """(name, dtype, shape without batch, value) of the trunk's data inputs."""
    rng = np.random.RandomState(1)
    if trunk.startswith("dense"):
        return [("x", tf.float32, [6], rng.rand(B, 6))]
    if trunk.startswith("conv"):
        return [("x", tf.float32, [6, 6, 2], rng.rand(B, 6, 6, 2))]
    if trunk.startswith(("lstm", "gru")):
        return [("x", tf.float32, [5, 3], rng.rand(B, 5, 3))]
    if trunk.startswith("attention"):
        return [("x", tf.float32, [5, 4], rng.rand(B, 5, 4))]
    if trunk == "graph_segment_sum":
        edges = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [1, 3]], np.int32)
        return [("x", tf.float32, [3], rng.rand(B, 3)), ("edges", tf.int32, [2], edges)]
    if trunk == "graph_sparse_matmul":
        adj = (rng.rand(B, B) > 0.5).astype(np.float32)
        return [("x", tf.float32, [3], rng.rand(B, 3)), ("adjacency", tf.float32, [B], adj)]
    raise ValueError(trunk)


HEAD_LABELS = {"softmax": ["y_cls"], "sigmoid": ["y_cls"], "regression": ["y_reg"], "regression_clip": ["y_reg"],
               "policy_value": ["y_cls", "y_reg"], "multitask": ["y_cls", "y_cls2"], "argmax": ["y_cls"],
               "top_k": ["y_cls"], "nms": ["y_box", "y_cls"], "nms_threshold": ["y_box", "y_cls"],
               "pixel_shuffle": ["y_img"], "pixel_shuffle_clip": ["y_img"]}
LABEL_SPECS = {"y_cls": (tf.int32, [], lambda r: r.randint(0, 3, B)),
               "y_cls2": (tf.int32, [], lambda r: r.randint(0, 2, B)),
               "y_reg": (tf.float32, [2], lambda r: r.rand(B, 2)),
               "y_box": (tf.float32, [4], lambda r: r.rand(B, 4)),
               "y_img": (tf.float32, [4, 4, 1], lambda r: r.rand(B, 4, 4, 1)),
               "y_seq": (tf.int32, [3], lambda r: r.randint(0, 4, (B, 3)))}


def _labels_needed(combo: Combo) -> List[str]:
    need = list(HEAD_LABELS[combo.variant("head")])
    if (combo.variant("extra").startswith("aux") or combo.variant("frozen") == "loss_network") and "y_cls" not in need:
        need.append("y_cls")
    if combo.variant("loop") != "none":
        need.append("y_seq")
    return need


def part_input(b: _Builder):
    """Placeholders, a one-shot tf.data iterator over constants, an initializable one over
    placeholders, or a uint8 placeholder with the scaling in the graph."""
    kind = b.combo.variant("input")
    trunk = b.combo.variant("trunk")
    specs = _data_specs(trunk)
    rng = np.random.RandomState(2)
    labels = [(n,) + LABEL_SPECS[n][:2] + (np.asarray(LABEL_SPECS[n][2](rng)),) for n in _labels_needed(b.combo)]
    data = {}
    if kind in ("placeholder", "uint8_placeholder"):
        for name, dtype, shape, value in specs:
            if kind == "uint8_placeholder" and dtype == tf.float32:
                raw = tf1.placeholder(tf.uint8, [None] + shape, name=name + "_raw")
                b.feeds[raw] = (value * 255).astype(np.uint8)
                data[name] = tf.cast(raw, tf.float32) / 255.0
                b.data_inputs.append(raw.name)
            else:
                p = tf1.placeholder(dtype, [None] + shape, name=name)
                b.feeds[p] = value.astype(dtype.as_numpy_dtype)
                data[name] = p
                b.data_inputs.append(p.name)
        for name, dtype, shape, value in labels:
            p = tf1.placeholder(dtype, [None] + shape, name=name)
            b.feeds[p] = value.astype(dtype.as_numpy_dtype)
            b.labels[name] = p
        return data
    names = [s[0] for s in specs] + [l[0] for l in labels]
    values = [s[3].astype(s[1].as_numpy_dtype) for s in specs] + [l[3].astype(l[1].as_numpy_dtype) for l in labels]
    graph_trunk = trunk.startswith("graph")
    if kind == "one_shot_dataset":
        ds = (tf.data.Dataset.from_tensors(tuple(values)) if graph_trunk
              else tf.data.Dataset.from_tensor_slices(tuple(values)).batch(B))
        it = tf1.data.make_one_shot_iterator(ds.repeat())
    else:  # initializable over placeholders (the placeholders only feed the dataset)
        sources = []
        for n, v in zip(names, values):
            p = tf1.placeholder(tf.as_dtype(v.dtype), [None] + list(v.shape[1:]), name=n + "_source")
            b.feeds[p] = v
            sources.append(p)
        ds = (tf.data.Dataset.from_tensors(tuple(sources)) if graph_trunk
              else tf.data.Dataset.from_tensor_slices(tuple(sources)).batch(B))
        it = tf1.data.make_initializable_iterator(ds.repeat())
        b.init_ops = [it.initializer]
    got = it.get_next()
    op = got[0].op
    for i, n in enumerate(names):
        if i < len(specs):
            data[n] = got[i]
            b.data_inputs.append("%s:0" % op.name if i == 0 else "%s_%d:0" % (op.name, i))  # (output 0 keeps its name)
        else:
            b.labels[n] = got[i]
    return data


# -- trunks --------------------------------------------------------------------------------

def _cell_vars(b, cell, d_in, n):
    """The cell's variables, made before any loop (a v2 while body cannot create them)."""
    if cell == "lstm":
        return (b.var("lstm/kernel", [d_in + n, 4 * n], "trunk"),
                b.var("lstm/bias", [4 * n], "trunk", value=np.zeros(4 * n, np.float32)))
    return (b.var("gru/gates/kernel", [d_in + n, 2 * n], "trunk"), b.var("gru/candidate/kernel", [d_in + n, n], "trunk"))


def _lstm_step(x_t, h, c, w, bias):
    z = tf.matmul(tf.concat([x_t, h], 1), w) + bias
    i, f, g, o = tf.split(z, 4, axis=1)
    c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


def _gru_step(x_t, h, wg, wc):
    r, u = tf.split(tf.sigmoid(tf.matmul(tf.concat([x_t, h], 1), wg)), 2, axis=1)
    cand = tf.tanh(tf.matmul(tf.concat([x_t, r * h], 1), wc))
    return u * h + (1 - u) * cand


def _rnn(b, x, cell, unroll):
    steps = int(x.shape[1])
    zeros = tf.zeros(tf.stack([tf.shape(x)[0], FEAT]))
    weights = _cell_vars(b, cell, int(x.shape[-1]), FEAT)
    if unroll == "static":
        h, c = zeros, zeros
        for x_t in tf.unstack(x, axis=1):
            if cell == "lstm":
                h, c = _lstm_step(x_t, h, c, *weights)
            else:
                h = _gru_step(x_t, h, *weights)
        return h
    inputs = tf1.TensorArray(tf.float32, size=steps).unstack(tf.transpose(x, [1, 0, 2]))
    outs = tf1.TensorArray(tf.float32, size=steps)

    def body(t, h, c, outs):
        x_t = inputs.read(t)
        x_t.set_shape([None, int(x.shape[-1])])
        if cell == "lstm":
            h, c = _lstm_step(x_t, h, c, *weights)
        else:
            h = _gru_step(x_t, h, *weights)
        return t + 1, h, c, outs.write(t, h)

    _, h, _, outs = tf1.while_loop(lambda t, *_: t < steps, body, [tf.constant(0), zeros, zeros, outs])
    return h + tf.reduce_mean(outs.stack(), axis=0)


def part_trunk(b: _Builder, data) -> tf.Tensor:
    kind = b.combo.variant("trunk")
    x = data["x"]
    with tf1.variable_scope("trunk"):
        if kind == "dense":
            h = b.dense(x, 10, "fc1", "trunk", tf.nn.relu)
            return b.dense(h, FEAT, "fc2", "trunk", tf.nn.relu)
        if kind == "dense_residual":
            h = b.dense(x, FEAT, "proj", "trunk")
            h = h + b.dense(tf.nn.relu(h), FEAT, "block", "trunk")
            mean, var = tf.nn.moments(h, [1], keepdims=True)
            return (h - mean) * tf1.rsqrt(var + 1e-3) * b.var("ln/gamma", [FEAT], "trunk", value=np.ones(FEAT, np.float32))
        if kind == "conv2d":
            k = b.var("conv/kernel", [3, 3, 2, 4], "trunk")
            h = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME"))
            h = tf.nn.max_pool2d(h, 2, 2, "VALID")
            return b.dense(tf.reshape(h, [-1, 3 * 3 * 4]), FEAT, "fc", "trunk", tf.nn.relu)
        if kind == "conv_depthwise":
            dw = b.var("depthwise/kernel", [3, 3, 2, 2], "trunk")
            pw = b.var("pointwise/kernel", [1, 1, 4, FEAT], "trunk")
            h = tf.nn.relu6(tf.nn.separable_conv2d(x, dw, pw, [1, 1, 1, 1], "SAME"))
            return tf.reduce_mean(h, [1, 2])
        if kind.startswith(("lstm", "gru")):
            cell, unroll = kind.split("_")
            return _rnn(b, x, cell, "static" if unroll == "static" else "while")
        if kind.startswith("attention"):
            heads = 2 if kind == "attention_multihead" else 1
            q, k, v = (tf.einsum("btd,de->bte", x, b.var(n + "/kernel", [4, FEAT], "trunk")) for n in "qkv")
            if heads == 1:
                att = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / np.sqrt(FEAT).astype(np.float32))
                ctx = tf.matmul(att, v)
            else:
                def split(t):
                    return tf.transpose(tf.reshape(t, [-1, 5, heads, FEAT // heads]), [0, 2, 1, 3])
                scores = tf.matmul(split(q), split(k), transpose_b=True) / 2.0
                mask = tf.constant(np.triu(np.full((5, 5), -1e9, np.float32), 1))
                ctx = tf.matmul(tf.nn.softmax(scores + mask), split(v))
                ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [-1, 5, FEAT])
            return tf.reduce_mean(ctx, axis=1)
        if kind == "graph_segment_sum":
            edges = data["edges"]
            h = b.dense(x, FEAT, "embed", "trunk", tf.nn.relu)
            msgs = tf.gather(h, edges[:, 0])
            agg = tf.math.unsorted_segment_sum(msgs, edges[:, 1], tf.shape(h)[0])
            return b.dense(tf.concat([h, agg], 1), FEAT, "update", "trunk", tf.nn.relu)
        if kind == "graph_sparse_matmul":
            adj = tf.sparse.from_dense(data["adjacency"])
            h = b.dense(x, FEAT, "embed", "trunk")
            return tf.nn.relu(tf1.sparse_tensor_dense_matmul(adj, h) + h)
    raise ValueError(kind)


# -- training switches -------------------------------------------------------------------------

def part_switch(b: _Builder, f: tf.Tensor) -> tf.Tensor:
    kind = b.combo.variant("switch")
    if kind == "none":
        return f
    if kind == "dropout_default":
        sw = tf1.placeholder_with_default(False, [], name="is_training")
        b.feeds[sw] = True
        return tf.cond(sw, lambda: tf.nn.dropout(f, rate=0.5), lambda: tf.identity(f))
    if kind == "keep_prob_default":
        keep = tf1.placeholder_with_default(1.0, [], name="keep_prob")
        b.feeds[keep] = 0.8
        return tf.nn.dropout(f, rate=1.0 - keep)
    sw = (tf1.placeholder(tf.bool, [], name="is_training") if kind == "batchnorm_placeholder"
          else tf1.placeholder_with_default(False, [], name="is_training"))
    b.feeds[sw] = True
    with tf1.variable_scope("trunk/bn"):
        gamma = b.var("gamma", [FEAT], "trunk", value=np.ones(FEAT, np.float32))
        beta = b.var("beta", [FEAT], "trunk", value=np.zeros(FEAT, np.float32))
        mm = tf1.get_variable("moving_mean", initializer=tf.zeros([FEAT]), trainable=False)
        mv = tf1.get_variable("moving_variance", initializer=tf.ones([FEAT]), trainable=False)
    if kind == "batchnorm_placeholder":  # updates inside the cond (as hand-written TF1 models did)
        def train():
            mean, var = tf.nn.moments(f, [0])
            with tf.control_dependencies([tf1.assign(mm, mm * 0.9 + mean * 0.1), tf1.assign(mv, mv * 0.9 + var * 0.1)]):
                return tf.identity(mean), tf.identity(var)
        mean, var = tf.cond(sw, train, lambda: (tf.identity(mm), tf.identity(mv)))
    else:  # updates in UPDATE_OPS, run with the train op (as tf.layers did)
        bmean, bvar = tf.nn.moments(f, [0])
        updates = [tf1.assign(mm, mm * 0.9 + bmean * 0.1), tf1.assign(mv, mv * 0.9 + bvar * 0.1)]
        for u in updates:
            tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, u)
        b.update_ops += [u.op for u in updates]
        mean, var = tf.cond(sw, lambda: (bmean, bvar), lambda: (tf.identity(mm), tf.identity(mv)))
    return tf.nn.batch_normalization(f, mean, var, beta, gamma, 1e-3)


# -- heads ------------------------------------------------------------------------------------

def _ce(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def part_head(b: _Builder, f: tf.Tensor) -> tf.Tensor:
    """Adds the head's loss and deployed tensors; returns its primary float tensor (what
    distillation, GAN discriminators and entropy terms read)."""
    kind = b.combo.variant("head")
    L = b.labels
    with tf1.variable_scope("head"):
        if kind in ("softmax", "sigmoid", "argmax", "top_k"):
            logits = b.dense(f, 3, "logits", "head")
            if kind == "sigmoid":
                b.loss(lambda: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                    labels=tf.one_hot(L["y_cls"], 3), logits=logits)))
                b.deploy.append(tf.sigmoid(logits, name="probabilities"))
            else:
                b.loss(lambda: _ce(L["y_cls"], logits))
                if kind == "softmax":
                    b.deploy.append(tf.nn.softmax(logits, name="probabilities"))
                elif kind == "argmax":
                    b.deploy.append(tf.argmax(logits, 1, name="classes"))
                else:
                    probabilities = tf.nn.softmax(logits)
                    top = tf.nn.top_k(probabilities, k=2, name="top_k")
                    b.deploy += [top.values, top.indices]
            return logits
        if kind in ("regression", "regression_clip"):
            pred = b.dense(f, 2, "pred", "head")
            b.loss(lambda: tf1.losses.mean_squared_error(L["y_reg"], pred))
            b.deploy.append(tf.clip_by_value(pred, -1.0, 1.0, name="clipped") if kind == "regression_clip"
                            else pred)
            return pred
        if kind == "policy_value":
            logits = b.dense(f, 3, "policy_logits", "head")
            value = tf.squeeze(b.dense(f, 1, "value_fc", "head"), 1, name="value")
            b.loss(lambda: _ce(L["y_cls"], logits))
            b.loss(lambda: 0.5 * tf.reduce_mean(tf.square(value - L["y_reg"][:, 0])))
            b.deploy += [tf.nn.softmax(logits, name="policy"), value]
            return logits
        if kind == "multitask":
            la = b.dense(f, 3, "task_a/logits", "head")
            lb = b.dense(f, 2, "task_b/logits", "head")
            b.loss(lambda: _ce(L["y_cls"], la))
            b.loss(lambda: 0.5 * _ce(L["y_cls2"], lb))
            b.deploy += [tf.nn.softmax(la, name="task_a/probabilities"), tf.nn.softmax(lb, name="task_b/probabilities")]
            return la
        if kind in ("nms", "nms_threshold"):
            boxes = b.dense(f, 4, "boxes", "head")
            if kind == "nms":
                score_logits = b.dense(f, 1, "score", "head")
                scores = tf.sigmoid(score_logits[:, 0])
                b.loss(lambda: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                    labels=tf.cast(L["y_cls"] > 0, tf.float32), logits=score_logits[:, 0])))
                keep = tf.image.non_max_suppression(tf.stop_gradient(boxes), tf.stop_gradient(scores), 3, 0.5)
            else:
                cls_logits = b.dense(f, 2, "classes", "head")
                scores = tf.nn.softmax(cls_logits)[:, 1]
                b.loss(lambda: _ce(tf.minimum(L["y_cls"], 1), cls_logits))
                keep = tf.image.non_max_suppression(tf.stop_gradient(boxes), tf.stop_gradient(scores), 3, 0.4,
                                                    score_threshold=0.1)
            b.loss(lambda: tf1.losses.huber_loss(L["y_box"], boxes))
            b.deploy += [tf.gather(boxes, keep, name="detection_boxes"),
                         tf.gather(scores, keep, name="detection_scores")]
            return boxes
        if kind in ("pixel_shuffle", "pixel_shuffle_clip"):
            h = b.dense(f, 16, "upsample", "head")
            img = tf.nn.depth_to_space(tf.reshape(h, [-1, 2, 2, 4]), 2, name="pixel_shuffle")
            b.loss(lambda: tf.reduce_mean(tf.abs(img - L["y_img"])))
            b.deploy.append(tf.clip_by_value(img, 0.0, 1.0, name="image") if kind == "pixel_shuffle_clip" else img)
            return img
    raise ValueError(kind)


# -- extra loss terms, auxiliary and pre-training heads ------------------------------------------

def part_extra(b: _Builder, f: tf.Tensor, primary: tf.Tensor) -> None:
    kind = b.combo.variant("extra")
    if kind in ("l2", "entropy_l2", "aux_head_l2"):
        b.loss(lambda: 1e-4 * tf.add_n([tf.nn.l2_loss(v) for v in b.groups["trunk"] + b.groups["head"]
                                         if len(v.shape) > 1]))
    if kind in ("entropy_bonus", "entropy_l2"):
        source = primary if len(primary.shape) == 2 and int(primary.shape[-1]) > 1 else f
        p = tf.nn.softmax(source)
        entropy = -tf.reduce_sum(p * tf1.log(p + 1e-8), axis=1)
        coef = tf.constant(0.01, name="entropy_coef") if kind == "entropy_bonus" else \
            tf1.get_variable("entropy_beta", initializer=0.01, trainable=False)
        b.loss(lambda: -coef * tf.reduce_mean(entropy))
    if kind in ("aux_head", "aux_head_l2"):
        with tf1.variable_scope("aux"):
            hidden = b.dense(f, 6, "fc", "aux", tf.nn.relu)
            aux_logits = b.dense(hidden, 3, "logits", "aux")
        b.loss(lambda: 0.3 * _ce(b.labels["y_cls"], aux_logits))
    if kind == "pretrain_classifier":  # a masked-token head from pre-training, left in the graph (no loss)
        with tf1.variable_scope("pretrain"):
            tf.nn.softmax(b.dense(f, 5, "mlm_logits", "pretrain", bias=True), name="mlm_probabilities")
    if kind == "pretrain_reconstruction":  # an autoencoder's decoder from pre-training, left in the graph
        with tf1.variable_scope("pretrain"):
            tf.nn.sigmoid(b.dense(f, FEAT, "decoder", "pretrain", bias=True), name="reconstruction")


# -- decoding and sampling loops ---------------------------------------------------------------

def part_loop(b: _Builder, f: tf.Tensor) -> None:
    kind = b.combo.variant("loop")
    if kind == "none":
        return
    y_seq = b.labels["y_seq"]
    V, H, T = 4, 6, 3
    with tf1.variable_scope("decoder"):
        if kind.startswith("sampler"):
            logits = b.dense(f, V, "logits", "decoder")
            b.loss(lambda: _ce(y_seq[:, 0], logits))
            if kind == "sampler":
                b.deploy.append(tf.random.categorical(logits, 1, name="samples"))
            else:
                temperature = tf.constant(0.7, name="temperature")
                b.deploy.append(tf.squeeze(tf.random.categorical(logits / temperature, 1), 1, name="sample"))
            return
        emb = b.var("embedding", [V, H], "decoder")
        w_init = b.var("init/kernel", [FEAT, H], "decoder")
        w_hh = b.var("recurrent/kernel", [H, H], "decoder")
        w_out = b.var("output/kernel", [H, V], "decoder")
        h0 = tf.tanh(tf.matmul(f, w_init))

        def step(h, tok):
            h = tf.tanh(tf.matmul(h, w_hh) + tf.gather(emb, tok))
            return h, tf.matmul(h, w_out)

        # teacher forcing for the loss
        h, prev, step_losses = h0, tf.zeros_like(y_seq[:, 0]), []
        for t in range(T):
            h, logits = step(h, prev)
            with b.loss_scope():
                step_losses.append(_ce(y_seq[:, t], logits))
            prev = y_seq[:, t]
        b.loss(lambda: tf.add_n(step_losses) / T)
        # greedy decoding for inference
        start = tf.zeros(tf.shape(f)[:1], tf.int32)
        ta = tf1.TensorArray(tf.int32, size=T)
        if kind == "greedy_while":
            def body(t, h, tok, ta):
                h, logits = step(h, tok)
                tok = tf.argmax(logits, 1, output_type=tf.int32)
                return t + 1, h, tok, ta.write(t, tok)
            _, _, _, ta = tf1.while_loop(lambda t, *_: t < T, body, [tf.constant(0), h0, start, ta])
            b.deploy.append(tf.transpose(ta.stack(), name="tokens"))
        else:  # stops early once every sequence emitted the end token (3), at most T steps
            def cond(t, h, tok, done, ta):
                return tf.logical_not(tf.reduce_all(done))

            def body(t, h, tok, done, ta):
                h, logits = step(h, tok)
                tok = tf.argmax(logits, 1, output_type=tf.int32)
                return t + 1, h, tok, tf.logical_or(done, tf.equal(tok, 3)), ta.write(t, tok)
            ta = tf1.TensorArray(tf.int32, size=0, dynamic_size=True)
            loop = tf.while_loop(cond, body, [tf.constant(0), h0, start, tf.zeros_like(start, tf.bool), ta],
                                 maximum_iterations=T)
            b.deploy.append(tf.transpose(loop[-1].stack(), name="tokens"))


# -- frozen sub-networks ------------------------------------------------------------------------

def _flat(t: tf.Tensor) -> tf.Tensor:
    """[batch, features]: an image head's output flattened where another part reads it (that part's reshape)."""
    return t if len(t.shape) == 2 else tf.reshape(t, [-1, int(np.prod(t.shape[1:]))])


def _target_like(b: _Builder, primary: tf.Tensor) -> tf.Tensor:
    """A label-derived tensor shaped like the head's primary tensor (what a perceptual loss
    compares the prediction with)."""
    k = int(primary.shape[-1])
    L = b.labels
    if k == 2 and "y_reg" in L:
        return L["y_reg"]
    if k == 4 and "y_box" in L:
        return L["y_box"]
    if k == 16 and "y_img" in L:
        return tf.reshape(L["y_img"], [-1, 16])
    return tf.one_hot(L["y_cls"], k)


def part_frozen(b: _Builder, data, primary: tf.Tensor, index: int) -> None:
    kind = b.combo.variant("frozen")
    if kind == "none":
        return
    # the first variant of each (index 2, 3) has trainable=False variables; the second (4, 5) trainable
    # ones that no optimizer's var_list names
    as_trainable = index >= 4
    primary = _flat(primary)
    k = int(primary.shape[-1])
    if kind == "teacher":
        with tf1.variable_scope("teacher"):
            flat = tf.reshape(data["x"], [-1, int(np.prod(data["x"].shape[1:]))])
            th = tf.nn.relu(b.dense(flat, 12, "fc1", "teacher", trainable=as_trainable))
            tlogits = b.dense(th, k, "logits", "teacher", trainable=as_trainable)
        soft = tf.stop_gradient(tf.nn.softmax(tlogits / 2.0))
        b.loss(lambda: 0.5 * tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=primary / 2.0)))
    else:  # a fixed feature network the loss compares through (a perceptual loss)
        with tf1.variable_scope("loss_network"):
            def feats(t):
                return tf.nn.relu(b.dense(t, 5, "fc", "loss_network", trainable=as_trainable))
            with tf1.variable_scope("apply", reuse=tf1.AUTO_REUSE):
                fp = feats(primary)
            with tf1.variable_scope("apply", reuse=True):
                ft = feats(_target_like(b, primary))
        b.loss(lambda: 0.1 * tf.reduce_mean(tf.square(fp - ft)))


# -- optimisers ---------------------------------------------------------------------------------

def part_optimizer(b: _Builder, primary: tf.Tensor, f: tf.Tensor) -> None:
    kind = b.combo.variant("optimizer")
    extra = b.combo.variant("extra")
    g = b.groups
    if extra.startswith("pretrain"):  # fine-tuning: only the classifier head trains
        model_vars = list(g["head"])
        trunk_part, head_part = model_vars[:2], model_vars[2:] or model_vars[:1]
    else:
        model_vars = g["trunk"] + g["head"] + g.get("aux", []) + g.get("decoder", [])
        trunk_part, head_part = g["trunk"], g["head"] + g.get("aux", []) + g.get("decoder", [])
    loss = tf.add_n(b.losses, name="total_loss")
    if True:  # (batch-norm updates run with the first train op, grouped below)
        # with a pre-training head kept beside, fine-tuning trains the classifier head only
        if kind == "sgd":
            b.train_ops.append(tf1.train.GradientDescentOptimizer(0.01).minimize(loss, var_list=model_vars))
        elif kind == "adam":
            step = tf1.train.get_or_create_global_step()
            b.train_ops.append(tf1.train.AdamOptimizer(1e-3).minimize(loss, step, var_list=model_vars))
        elif kind == "momentum_decay":
            step = tf1.train.get_or_create_global_step()
            lr = tf1.train.exponential_decay(0.01, step, 100, 0.9)
            b.train_ops.append(tf1.train.MomentumOptimizer(lr, 0.9).minimize(loss, step, var_list=model_vars))
        elif kind == "adam_clipped":
            opt = tf1.train.AdamOptimizer(1e-3)
            grads, variables = zip(*opt.compute_gradients(loss, var_list=model_vars))
            grads, _ = tf.clip_by_global_norm(grads, 1.0)
            b.train_ops.append(opt.apply_gradients(zip(grads, variables)))
        elif kind.startswith("split"):
            first, second = ((tf1.train.GradientDescentOptimizer(0.01), tf1.train.AdamOptimizer(1e-3))
                             if kind == "split_sgd_adam" else
                             (tf1.train.RMSPropOptimizer(1e-3), tf1.train.AdagradOptimizer(0.01)))
            b.train_ops.append(tf.group(first.minimize(loss, var_list=trunk_part),
                                        second.minimize(loss, var_list=head_part), name="train"))
        elif kind.startswith("gan"):
            real_source = b.labels.get("y_reg")
            with tf1.variable_scope("discriminator", reuse=tf1.AUTO_REUSE):
                what = _flat(primary) if kind == "gan_adam" else f
                k = int(what.shape[-1])

                def disc(t):
                    return b.dense(tf.nn.leaky_relu(b.dense(t, 6, "fc", "disc")), 1, "out", "disc")
                with tf1.variable_scope("d"):
                    d_fake = disc(what)
                with tf1.variable_scope("d", reuse=True):
                    real = tf.random.normal(tf.shape(what)) if real_source is None or k != 2 else real_source
                    d_real = disc(real)
            bce = tf.nn.sigmoid_cross_entropy_with_logits
            d_loss = tf.reduce_mean(bce(labels=tf.ones_like(d_real), logits=d_real)
                                    + bce(labels=tf.zeros_like(d_fake), logits=d_fake), name="d_loss")
            g_loss = tf.add(loss, 0.1 * tf.reduce_mean(bce(labels=tf.ones_like(d_fake), logits=d_fake)), name="g_loss")
            if kind == "gan_adam":
                og, od = tf1.train.AdamOptimizer(1e-3, 0.5), tf1.train.AdamOptimizer(1e-3, 0.5)
            else:
                og, od = tf1.train.GradientDescentOptimizer(0.01), tf1.train.GradientDescentOptimizer(0.01)
            b.train_ops += [og.minimize(g_loss, var_list=model_vars, name="train_model"),
                            od.minimize(d_loss, var_list=g["disc"], name="train_discriminator")]
        else:
            raise ValueError(kind)
    if b.update_ops:
        b.train_ops[0] = tf.group(b.train_ops[0], *b.update_ops, name="train_with_updates")


def _session_config():
    """No graph rewriting and one thread: a one-step run of a tiny graph is dominated by Grappler."""
    from tensorflow.core.protobuf import rewriter_config_pb2

    config = tf1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    config.graph_options.optimizer_options.opt_level = tf1.OptimizerOptions.L0
    config.graph_options.rewrite_options.constant_folding = rewriter_config_pb2.RewriterConfig.OFF
    return config


_SESSION_CONFIG = _session_config()


# -- the composer -------------------------------------------------------------------------------

def build(combo: Combo, directory: str) -> Answer:
    """Build, train one step and save ``combo`` under ``directory``; its known answer."""
    import time

    started = time.perf_counter()
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    b = _Builder(combo)
    b.init_ops = []
    with graph.as_default():
        tf1.set_random_seed(int(combo.key[:6], 16))
        data = part_input(b)
        f = part_trunk(b, data)
        f = part_switch(b, f)
        primary = part_head(b, f)
        part_extra(b, f, primary)
        part_loop(b, f)
        part_frozen(b, data, primary, dict(combo.parts)["frozen"])
        part_optimizer(b, primary, f)
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph, config=_SESSION_CONFIG) as sess:
            sess.run(tf1.global_variables_initializer())
            if b.init_ops:
                sess.run(b.init_ops, b.feeds)
            sess.run(b.train_ops, b.feeds)  # one step (a GAN's two optimizers in the same step)
            saver.save(sess, os.path.join(directory, "model.ckpt"), global_step=1)
        outputs = [t.name for t in b.deploy]
    return Answer(combo, directory, outputs, list(b.data_inputs), time.perf_counter() - started)


# -- grading --------------------------------------------------------------------------------------

VERDICTS = ("right", "refused_right", "refused_other", "wrong", "crash")
REFUSALS = ("ERROR_REASON_OUTPUTS_AMBIGUOUS", "ERROR_REASON_NO_OUTPUTS_FOUND")


def grade(answer: Answer, outputs: Optional[Sequence[str]] = None, inputs: Optional[Sequence[str]] = None,
          reason: Optional[str] = None, candidates: Sequence[str] = ()) -> Tuple[str, str]:
    """The verdict on one automatic answer (a freeze's outputs and inputs, or its error's
    reason and candidate list) and a short detail."""
    want_out, want_in = sorted(answer.outputs), sorted(answer.inputs)
    if reason is not None:
        if reason in REFUSALS:
            top = list(candidates)[:max(3, len(want_out))]
            missing = [o for o in want_out if o not in top]
            if not missing:
                return "refused_right", reason
            return "refused_other", "%s; right outputs %s not in the first %d candidates %s" % (
                reason, missing, len(top), top)
        return "crash", reason
    got_out, got_in = sorted(outputs or ()), sorted(inputs or ())
    if got_in == want_in and got_out == want_out:
        return "right", ""
    detail = []
    if got_out != want_out:
        detail.append("outputs %s (right: %s)" % (got_out, want_out))
    if got_in != want_in:
        detail.append("inputs %s (right: %s)" % (got_in, want_in))
    return "wrong", "; ".join(detail)


def wrong_pattern(answer: Answer, outputs: Sequence[str] = (), inputs: Sequence[str] = ()) -> str:
    """A coarse class of a wrong answer (which way it is wrong), for the breakdowns."""
    want_out, got_out = set(answer.outputs), set(outputs)
    kinds = []
    if want_out != got_out:
        if got_out < want_out:
            kinds.append("outputs: missing some")
        elif got_out > want_out:
            kinds.append("outputs: extra ones")
        elif not got_out & want_out:
            kinds.append("outputs: none right")
        else:
            kinds.append("outputs: some swapped")
    if set(answer.inputs) != set(inputs):
        kinds.append("inputs differ")
    return " + ".join(kinds)


def summarise(rows: List[dict]) -> Dict[str, Dict[str, int]]:
    """{half: {verdict: count, "total": n}} from rows with "half" and "verdict"."""
    table: Dict[str, Dict[str, int]] = {}
    for r in rows:
        t = table.setdefault(r["half"], dict.fromkeys(VERDICTS + ("total",), 0))
        t[r["verdict"]] += 1
        t["total"] += 1
    return table


def format_table(table: Dict[str, Dict[str, int]]) -> str:
    head = "%-8s %6s %6s %14s %14s %6s %6s" % (("half", "total") + VERDICTS)
    lines = [head]
    for half in HALVES:
        if half in table:
            t = table[half]
            lines.append("%-8s %6d %6d %14d %14d %6d %6d" % ((half, t["total"]) + tuple(t[v] for v in VERDICTS)))
    return "\n".join(lines)


def part_breakdown(rows: List[dict], verdict: str = "wrong") -> List[Tuple[str, int, int]]:
    """(kind=variant, rows with that verdict, rows in all) for every part variant seen, worst rate first."""
    counts: Dict[str, List[int]] = {}
    for r in rows:
        for part in r["combo"].split(","):
            c = counts.setdefault(part, [0, 0])
            c[1] += 1
            c[0] += r["verdict"] == verdict
    return sorted(((k, a, n) for k, (a, n) in counts.items()), key=lambda x: (-x[1] / x[2], -x[1], x[0]))


# -- running: build, freeze through a client, grade -----------------------------------------------

def verdict_of(client, answer: Answer) -> dict:
    """Freeze ``answer``'s checkpoint without names through ``client`` (a tffreeze.FreezeClient)
    and grade it. A freeze, not an inspect: inspect resolves with refusals turned off
    (engine.inspect: refuse_ambiguous=False) and lists the inputs before binding, so it can
    answer where a freeze refuses and differ from the freeze's inputs."""
    import time

    from tffreeze import TffreezeError

    started = time.perf_counter()
    row = {"combo": answer.combo.name, "half": answer.combo.half, "key": answer.combo.key,
           "right_outputs": sorted(answer.outputs), "right_inputs": sorted(answer.inputs),
           "build_s": round(answer.seconds, 3)}
    try:
        outcome = client.freeze(answer.directory)
    except TffreezeError as exc:
        listed = [c for c in exc.metadata.get("candidates", "").split(",") if c]
        row["verdict"], row["detail"] = grade(answer, reason=exc.reason or exc.code, candidates=listed)
        row.update(reason=exc.reason or exc.code, candidates=listed[:6], message=str(exc)[:400])
    else:
        m = outcome.manifest
        outs, ins = [o["name"] for o in m["outputs"]], [i["name"] for i in m["inputs"]]
        row["verdict"], row["detail"] = grade(answer, outs, ins)
        row.update(outputs=sorted(outs), inputs=sorted(ins))
        if row["verdict"] == "wrong":
            row["pattern"] = wrong_pattern(answer, outs, ins)
    row["freeze_s"] = round(time.perf_counter() - started, 3)
    return row


def run(combos: Sequence[Combo], client, root: str, threads: int = 2, progress=None) -> List[dict]:
    """Build every combination (in this process, one after another) while ``threads``
    freezes of those already built run through ``client``; one graded row each, in order.
    A combination whose build fails is a row with verdict "build_error" (a generator bug)."""
    import shutil
    import traceback
    from concurrent.futures import ThreadPoolExecutor

    def freeze_then_clean(answer):
        try:
            return verdict_of(client, answer)
        finally:
            shutil.rmtree(answer.directory, ignore_errors=True)

    futures = []
    with ThreadPoolExecutor(threads) as pool:
        for i, combo in enumerate(combos):
            try:
                answer = build(combo, os.path.join(root, "%s-%s" % (combo.half, combo.key)))
            except Exception:  # noqa: BLE001 - reported as a row, the run goes on
                futures.append({"combo": combo.name, "half": combo.half, "key": combo.key, "verdict": "build_error",
                                "detail": traceback.format_exc(limit=3)[-600:]})
                continue
            futures.append(pool.submit(freeze_then_clean, answer))
            if progress:
                progress(i + 1, len(combos))
        return [f if isinstance(f, dict) else f.result() for f in futures]
