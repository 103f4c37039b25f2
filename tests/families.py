"""Small trained TF1-style graphs, one or more per public API family of TensorFlow, for the
differential test against TensorFlow's own freeze_graph (tests/integration/test_differential.py).

Every case builds a ``tf.compat.v1`` graph in which a few trainable variables feed the
family's ops, adds a loss and an optimizer (so the saved meta graph carries gradients and
apply ops, as a user's training checkpoint does), trains two steps on fixed feeds, and saves
with ``tf.compat.v1.train.Saver``. Its outputs are named ``out0``, ``out1``, ... (identities
of the family's results) and its inputs are the placeholders it feeds. Random values come
from a fixed seed (numpy and the graph's).

``CASES`` maps a case's name to its ``Case``; ``build(name, directory)`` writes it and
returns a ``Built``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
SEED = 20240

OPTIMIZERS = {
    "sgd": lambda: tf1.train.GradientDescentOptimizer(0.05),
    "momentum": lambda: tf1.train.MomentumOptimizer(0.05, 0.9),
    "adam": lambda: tf1.train.AdamOptimizer(0.01),
    "rmsprop": lambda: tf1.train.RMSPropOptimizer(0.01),
    "adagrad": lambda: tf1.train.AdagradOptimizer(0.05),
}


@dataclass
class Case:
    name: str
    family: str
    body: Callable  # (Graph builder) -> (outputs, loss)
    optimizer: str = "adam"
    cf_v1: bool = False  # build with control flow v1 (Enter/Exit/Switch/Merge, TensorArrayV3)
    resource: bool = True  # resource variables (else ref variables)


@dataclass
class Built:
    directory: str
    prefix: str  # the checkpoint prefix (absolute)
    inputs: List[str]  # placeholder tensor names
    outputs: List[str]  # output tensor names: out0:0, out1:0, ...
    feeds: Dict[str, np.ndarray]
    init: List[str] = field(default_factory=list)  # table initialiser a graph that keeps its tables must run
    files: Dict[str, str] = field(default_factory=dict)  # files the graph reads (vocabularies), by purpose


CASES: Dict[str, Case] = {}


def case(family: str, **options):
    def register(body):
        CASES[body.__name__] = Case(body.__name__, family, body, **options)
        return body
    return register


class Graph:
    """What a case's body builds with: placeholders that record their feed, variables with
    fixed random initial values, and a loss over float results."""

    def __init__(self, directory: str, resource: bool):
        self.directory = directory
        self.rng = np.random.RandomState(SEED)
        self.resource = resource
        self.feeds: Dict[str, np.ndarray] = {}
        self.inputs: List[str] = []
        self.files: Dict[str, str] = {}
        self.before_save: list = []  # ops run once after training, before the checkpoint is saved

    def input(self, name: str, value, dtype=None, shape=None):
        value = np.asarray(value, dtype=object) if dtype == tf.string else np.asarray(value)
        dtype = dtype or tf.as_dtype(value.dtype)
        placeholder = tf1.placeholder(dtype, shape if shape is not None else [None] + list(value.shape[1:]), name=name)
        self.feeds[placeholder.name] = value
        self.inputs.append(placeholder.name)
        return placeholder

    def var(self, name: str, shape, scale: float = 0.5, offset: float = 0.0, dtype=np.float32):
        value = (self.rng.randn(*shape) * scale + offset).astype(dtype)
        return tf1.get_variable(name, initializer=tf.constant(value), use_resource=self.resource)

    def values(self, *shape, scale: float = 1.0):
        return (self.rng.randn(*shape) * scale).astype(np.float32)

    @staticmethod
    def loss(*tensors):
        return tf.add_n([tf.reduce_mean(tf.square(tf.cast(t, tf.float32))) for t in tensors])


def build(name: str, directory: str, steps: int = 2) -> Built:
    """Build case ``name``, train it ``steps`` steps and save it into ``directory``."""
    spec = CASES[name]
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    if spec.cf_v1:
        tf1.disable_control_flow_v2()
    try:
        with graph.as_default():
            tf1.set_random_seed(SEED)
            g = Graph(directory, spec.resource)
            results, loss = spec.body(g)
            outputs = [tf.identity(t, name="out%d" % k).name for k, t in enumerate(results)]
            step = tf1.train.get_or_create_global_step()
            train = OPTIMIZERS[spec.optimizer]().minimize(loss, global_step=step)
            tables = tf1.tables_initializer()
            saver = tf1.train.Saver()
            with tf1.Session(graph=graph) as sess:
                sess.run([tf1.global_variables_initializer(), tables])
                for _ in range(steps):
                    sess.run(train, g.feeds)
                if g.before_save:
                    sess.run(g.before_save)
                prefix = saver.save(sess, os.path.join(directory, "model.ckpt"), global_step=step)
    finally:
        if spec.cf_v1:
            tf1.enable_control_flow_v2()
    uses_tables = any(n.op in ("HashTableV2", "HashTable", "MutableHashTableV2", "MutableDenseHashTableV2")
                      for n in graph.as_graph_def().node)
    return Built(directory, prefix, g.inputs, outputs, g.feeds, [tables.name] if uses_tables else [], g.files)


# ---------------------------------------------------------------------------
# tf.math


@case("tf.math")
def math_elementwise(g):
    x = g.input("x", g.values(3, 4))
    w = g.var("w", [4])
    b = g.var("b", [4])
    h = x * w + b
    smooth = tf.math.log1p(tf.abs(h)) + tf.math.erf(h) + tf.math.softplus(h) - tf.math.sigmoid(h)
    special = tf.math.lgamma(tf.abs(h) + 1.0) + tf.math.xlogy(tf.abs(h), tf.abs(h) + 0.5) + tf.math.bessel_i0e(h)
    cums = tf.math.cumsum(h, axis=1) + tf.math.cumprod(tf.tanh(h), axis=1, exclusive=True)
    lse = tf.math.reduce_logsumexp(h, axis=1)
    norm = tf.math.reduce_euclidean_norm(h, axis=0) + tf.math.reduce_std(h, axis=0)
    poly = tf.math.polyval([b[0], 0.5, -1.0], h)
    return [smooth, special, cums, lse, norm, poly], g.loss(smooth, special, cums, lse, poly)


@case("tf.math", optimizer="sgd")
def math_integer_and_ranking(g):
    x = g.input("x", g.values(3, 6))
    w = g.var("w", [6])
    h = x * w
    top = tf.math.top_k(h, k=3)
    arg = tf.math.argmax(h, axis=1)
    ints = tf.cast(tf.round(h * 10.0), tf.int32)
    div = tf.math.floordiv(ints, 3) + tf.math.floormod(ints, 4) + tf.truncatediv(ints, 2)
    counts = tf.math.bincount(tf.math.abs(ints) % 5, minlength=5)
    finite = tf.math.is_finite(h / (h - h[0:1]))
    clipped = tf.clip_by_value(h, -0.5, 0.5) + tf.math.maximum(h, 0.1) * tf.math.sign(h)
    shift = tf.bitwise.right_shift(tf.bitwise.bitwise_and(ints, 255), 1)
    return [top.values, top.indices, arg, div, counts, finite, clipped, shift], g.loss(top.values, clipped)


@case("tf.math", optimizer="rmsprop")
def math_reductions_and_complex(g):
    x = g.input("x", g.values(2, 5))
    w = g.var("w", [5], scale=1.0)
    h = x + w
    z = tf.complex(h, tf.reverse(h, [1]))
    mag = tf.math.abs(z) + tf.math.angle(z) + tf.math.real(z * tf.math.conj(z))
    reduced = [tf.math.reduce_prod(h, 1), tf.math.reduce_max(h, 0), tf.math.reduce_min(h, 1),
               tf.math.reduce_variance(h, 1), tf.math.count_nonzero(h > 0, 1), tf.math.reduce_any(h > 1.0, 1)]
    seg = tf.math.segment_max(h[0], [0, 0, 1, 1, 2])
    return [mag, seg] + reduced, g.loss(mag, reduced[0], reduced[3], seg)


# ---------------------------------------------------------------------------
# tf.linalg


@case("tf.linalg")
def linalg_decompositions(g):
    x = g.input("x", g.values(3, 3, scale=0.3))
    w = g.var("w", [3, 3])
    a = tf.matmul(w + x, w + x, transpose_b=True) + 2.0 * tf.eye(3)
    chol = tf.linalg.cholesky(a)
    rhs = tf.ones([3, 2])
    solved = tf.linalg.cholesky_solve(chol, rhs) + tf.linalg.solve(a, rhs)
    tri = tf.linalg.triangular_solve(chol, rhs, lower=True)
    inv = tf.linalg.inv(a)
    sign, logdet = tf.linalg.slogdet(a)
    det = tf.linalg.det(a)
    q, r = tf.linalg.qr(w + x)
    eig = tf.linalg.eigh(a)[0]
    sv = tf.linalg.svd(a, compute_uv=False)
    lu = tf.linalg.lu(a)
    return ([chol, solved, tri, inv, logdet, sign, det, tf.abs(q), tf.abs(r), eig, sv, lu.lu, lu.p],
            g.loss(chol, solved, logdet, eig))


@case("tf.linalg", optimizer="momentum")
def linalg_products(g):
    x = g.input("x", g.values(2, 3, 4))
    w = g.var("w", [4, 3])
    e = tf.einsum("bij,jk->bik", x, w)
    band = tf.linalg.band_part(e[:, :, :3], 1, 0)
    diag = tf.linalg.diag_part(band) + tf.linalg.trace(band)[:, None]
    matvec = tf.linalg.matvec(w, x[0, 0, :], transpose_a=True)
    dot = tf.tensordot(x, w, axes=[[2], [0]])
    norm = tf.linalg.norm(e, axis=[1, 2]) + tf.norm(w, ord=1)
    kron = tf.linalg.set_diag(tf.zeros([3, 3]), tf.linalg.diag_part(w[:3, :3]))
    cross = tf.linalg.cross(w[:, :3][:3], x[0, :, :3])
    adj = tf.linalg.adjoint(tf.linalg.matrix_transpose(e))
    return [e, band, diag, matvec, dot, norm, kron, cross, adj], g.loss(e, diag, matvec, norm, cross)


# ---------------------------------------------------------------------------
# tf.nn


@case("tf.nn")
def nn_convolutions(g):
    x = g.input("x", g.values(2, 8, 8, 3))
    k = g.var("k", [3, 3, 3, 4], scale=0.2)
    dk = g.var("dk", [3, 3, 4, 2], scale=0.2)
    pk = g.var("pk", [1, 1, 8, 5], scale=0.2)
    tk = g.var("tk", [2, 2, 3, 5], scale=0.2)
    b = g.var("b", [4], scale=0.1)
    h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k, 1, "SAME"), b))
    h = tf.nn.max_pool2d(h, 2, 2, "VALID")
    d = tf.nn.separable_conv2d(h, dk, pk, [1, 1, 1, 1], "SAME")
    dw = tf.nn.depthwise_conv2d(h, dk, [1, 1, 1, 1], "VALID")
    t = tf.nn.conv2d_transpose(d, tk, [2, 8, 8, 3], 2)
    a = tf.nn.atrous_conv2d(x, k, 2, "SAME")
    pooled = tf.nn.avg_pool2d(tf.nn.elu(a), 2, 2, "SAME")
    lrn = tf.nn.local_response_normalization(pooled)
    mean, var = tf.nn.moments(d, axes=[0, 1, 2])
    bn = tf.nn.batch_normalization(d, mean, var, None, None, 1e-3)
    return [d, dw, t, lrn, bn, mean], g.loss(d, dw, t, lrn, bn)


@case("tf.nn", optimizer="adagrad")
def nn_fused_batch_norm_and_activations(g):
    x = g.input("x", g.values(4, 4, 4, 3))
    scale = g.var("scale", [3], offset=1.0, scale=0.1)
    offset = g.var("offset", [3], scale=0.1)
    mean = g.var("mean", [3], scale=0.1)
    var = g.var("variance", [3], offset=1.0, scale=0.1)
    w = g.var("w", [3, 5])
    v, _, _ = tf1.nn.fused_batch_norm(x, scale, offset, mean=mean, variance=var, is_training=False)
    flat = tf.reshape(tf.nn.relu6(v) + tf.nn.leaky_relu(v) + tf.nn.selu(v), [-1, 3])
    logits = tf.matmul(flat, w)
    probs = tf.nn.softmax(logits) + tf.nn.log_softmax(logits) + tf.nn.gelu(logits) + tf.nn.silu(logits)
    normed = tf.nn.l2_normalize(logits, axis=1)
    labels = tf.constant(np.arange(64) % 5)  # 4 images of 4 x 4
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    sig = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(logits), logits=logits)
    in_top = tf.math.in_top_k(labels, logits, 2)
    return [probs, normed, xent, sig, in_top], tf.reduce_mean(xent) + tf.reduce_mean(sig)


@case("tf.nn", optimizer="momentum")
def nn_batch_norm_in_training_mode(g):
    """Batch statistics at inference (is_training=True as a python bool), as some generators
    (pix2pix) deploy on purpose."""
    x = g.input("x", g.values(4, 4, 4, 3))
    scale = g.var("scale", [3], offset=1.0, scale=0.1)
    offset = g.var("offset", [3], scale=0.1)
    y, mean, var = tf1.nn.fused_batch_norm(x, scale, offset, is_training=True)
    return [y, mean, var], g.loss(y)


@case("tf.nn", optimizer="sgd")
def nn_conv1d_conv3d_pool3d(g):
    x = g.input("x", g.values(2, 10, 3))
    v = g.input("v", g.values(1, 4, 4, 4, 2))
    k1 = g.var("k1", [3, 3, 4], scale=0.3)
    k3 = g.var("k3", [2, 2, 2, 2, 3], scale=0.3)
    c1 = tf.nn.conv1d(x, k1, 1, "SAME", dilations=2)
    c3 = tf.nn.conv3d(v, k3, [1, 1, 1, 1, 1], "SAME")
    p3 = tf.nn.max_pool3d(c3, 2, 2, "VALID") + tf.nn.avg_pool3d(c3, 2, 2, "VALID")
    drop = tf.nn.dropout(c1, rate=0.5, seed=3)
    return [c1, p3, drop], g.loss(c1, p3)


# ---------------------------------------------------------------------------
# tf.image


@case("tf.image")
def image_resize_and_color(g):
    x = g.input("images", np.abs(g.values(2, 6, 6, 3)) % 1.0)
    w = g.var("w", [3], offset=1.0, scale=0.1)
    img = tf.clip_by_value(x * w, 0.0, 1.0)
    sizes = [tf.image.resize(img, [9, 9], m) for m in ("bilinear", "nearest", "bicubic", "area")]
    sizes.append(tf1.image.resize_bilinear(img, [4, 4], align_corners=True))
    flips = tf.image.flip_left_right(img) + tf.image.flip_up_down(img) + tf.image.rot90(img)
    hsv = tf.image.rgb_to_hsv(img)
    back = tf.image.hsv_to_rgb(hsv) + tf.image.rgb_to_yuv(img) + tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(img))
    no_gradient = tf.stop_gradient(tf.image.adjust_saturation(img, 0.5) + tf.image.adjust_hue(img, 0.1)
                                   + tf.image.adjust_contrast(img, 1.5))
    adjusted = tf.image.adjust_brightness(img, 0.1) + no_gradient + tf.image.adjust_gamma(img, 2.0)
    std = tf.image.per_image_standardization(img)
    crop = tf.image.central_crop(img, 0.5)
    padded = tf.image.pad_to_bounding_box(img, 1, 1, 8, 8)
    sobel = tf.image.sobel_edges(img)
    dy, dx = tf.image.image_gradients(img)
    tv = tf.image.total_variation(img)
    psnr = tf.image.psnr(img, tf.image.flip_left_right(img), 1.0)
    return (sizes + [flips, back, adjusted, std, crop, padded, sobel, dy, dx, tv, psnr],
            g.loss(sizes[0], back, adjusted, std, tv))


@case("tf.image", optimizer="momentum")
def image_crop_and_resize_and_patches(g):
    x = g.input("images", np.abs(g.values(2, 8, 8, 2)))
    boxes0 = np.array([[0.1, 0.1, 0.6, 0.7], [0.2, 0.0, 0.9, 0.5], [0.0, 0.3, 1.0, 1.0]], np.float32)
    boxes = tf1.get_variable("boxes", initializer=tf.constant(boxes0), use_resource=g.resource)
    w = g.var("w", [2], offset=1.0, scale=0.1)
    crops = tf.image.crop_and_resize(x * w, boxes, [0, 1, 1], [4, 4])
    bilinear = tf.image.crop_and_resize(x * w, boxes, [1, 0, 1], [3, 5], method="nearest")
    patches = tf.image.extract_patches(x * w, [1, 3, 3, 1], [1, 2, 2, 1], [1, 1, 1, 1], "VALID")
    glimpse = tf.image.extract_glimpse(x * w, [3, 3], [[0.0, 0.0], [0.2, -0.1]], centered=True, normalized=True)
    drawn = tf.image.draw_bounding_boxes(x[:, :, :, :1] * 0 + w[0], tf.stack([boxes[:2], boxes[1:]]),
                                         [[1.0, 0.0, 0.0, 1.0]])
    return [crops, bilinear, patches, glimpse, drawn], g.loss(crops, bilinear, patches)


@case("tf.image")
def image_non_max_suppression(g):
    x = g.input("jitter", g.values(8, 4, scale=0.02))
    rng = np.random.RandomState(7)
    corners = rng.uniform(0, 0.6, (8, 2)).astype(np.float32)
    boxes0 = np.concatenate([corners, corners + rng.uniform(0.2, 0.4, (8, 2)).astype(np.float32)], 1)
    raw_boxes = tf1.get_variable("boxes", initializer=tf.constant(boxes0), use_resource=g.resource) + x
    raw_scores = tf.nn.sigmoid(g.var("logits", [8], scale=2.0))
    boxes, scores = tf.stop_gradient(raw_boxes), tf.stop_gradient(raw_scores)  # NMS has no gradient
    keep = tf.image.non_max_suppression(boxes, scores, 5, iou_threshold=0.3)
    soft, soft_scores = tf.image.non_max_suppression_with_scores(boxes, scores, 5, 0.5, soft_nms_sigma=0.5)
    padded, valid = tf.image.non_max_suppression_padded(boxes, scores, 6, 0.4, pad_to_max_output_size=True)
    overlaps = tf.image.non_max_suppression_overlaps(tf.matmul(boxes, boxes, transpose_b=True), scores, 4, 0.9)
    combined = tf.image.combined_non_max_suppression(
        tf.reshape(boxes, [1, 8, 1, 4]), tf.reshape(tf.stack([scores, 1.0 - scores], 1), [1, 8, 2]), 4, 6)
    kept = tf.gather(boxes, keep)
    return ([keep, soft, soft_scores, padded, valid, overlaps, combined.nmsed_boxes, combined.nmsed_scores,
             combined.nmsed_classes, combined.valid_detections, kept],
            g.loss(raw_boxes, raw_scores))


@case("tf.image / depth_to_space", optimizer="adam")
def depth_to_space_and_back(g):
    x = g.input("x", g.values(1, 4, 4, 8))
    k = g.var("k", [1, 1, 8, 8], scale=0.3)
    h = tf.nn.conv2d(x, k, 1, "SAME")
    d2s = tf.nn.depth_to_space(h, 2)
    s2d = tf.nn.space_to_depth(d2s * 2.0, 2)
    s2b = tf.space_to_batch(h, [2, 2], [[0, 0], [0, 0]])
    b2s = tf.compat.v1.batch_to_space(s2b * 0.5, [[0, 0], [0, 0]], 2)
    return [d2s, s2d, s2b, b2s], g.loss(d2s, s2d, b2s)


# ---------------------------------------------------------------------------
# tf.signal


@case("tf.signal")
def signal_fft_and_dct(g):
    x = g.input("x", g.values(2, 16))
    w = g.var("w", [16])
    h = x * w
    spec = tf.signal.rfft(h)
    back = tf.signal.irfft(spec * tf.cast(tf.abs(spec) > 0.1, tf.complex64))
    full = tf.signal.fft(tf.complex(h, h * 0.5))
    two = tf.signal.ifft2d(tf.signal.fft2d(tf.complex(tf.reshape(h, [2, 4, 4]), 0.0)))
    dct = tf.signal.dct(h, type=2, norm="ortho")
    idct = tf.signal.idct(dct, type=2, norm="ortho")
    window = tf.signal.hann_window(16) * h + tf.signal.hamming_window(16)
    shifted = tf.signal.fftshift(h, axes=1)
    return ([tf.abs(spec), back, tf.math.real(full), tf.math.imag(two), dct, idct, window, shifted],
            g.loss(tf.abs(spec), back, dct, window))


@case("tf.signal", optimizer="rmsprop")
def signal_frame_overlap_add(g):
    x = g.input("x", g.values(2, 32))
    w = g.var("w", [32])
    frames = tf.signal.frame(x * w, 8, 4)
    out = tf.signal.overlap_and_add(frames * tf.signal.hann_window(8), 4)
    return [frames, out], g.loss(frames, out)


@case("tf.signal")
def signal_stft_mel_mfcc(g):
    x = g.input("audio", g.values(2, 256))
    w = g.var("w", [1], offset=1.0, scale=0.1)
    stft = tf.signal.stft(x * w, frame_length=64, frame_step=32, fft_length=64)
    power = tf.abs(stft)
    mel = tf.tensordot(power, tf.signal.linear_to_mel_weight_matrix(8, 33, 8000, 20.0, 4000.0), 1)
    log_mel = tf.math.log(mel + 1e-6)
    mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)
    inverse = tf.signal.inverse_stft(stft, 64, 32, 64)
    return [power, log_mel, mfcc, inverse], g.loss(mfcc)


# ---------------------------------------------------------------------------
# tf.sparse


@case("tf.sparse")
def sparse_matmul_and_reductions(g):
    indices = g.input("indices", np.array([[0, 1], [1, 0], [1, 3], [2, 2]], np.int64))
    values = g.input("values", np.array([1.0, -2.0, 0.5, 3.0], np.float32))
    w = g.var("w", [4, 3])
    sp = tf.sparse.reorder(tf.SparseTensor(indices, values, [3, 4]))
    product = tf.sparse.sparse_dense_matmul(sp, w)
    scaled = sp * 2.0
    added = tf.sparse.add(sp, tf.sparse.from_dense(tf.eye(3, 4)))
    dense = tf.sparse.to_dense(tf.sparse.reorder(added))
    summed = tf.sparse.reduce_sum(sp, axis=1) + tf.sparse.reduce_max(sp, axis=1)
    soft = tf.sparse.softmax(tf.SparseTensor(indices, values * w[0, 0], [3, 4]))
    sliced = tf.sparse.slice(sp, [1, 0], [2, 4])
    reshaped = tf.sparse.reshape(sp, [4, 3])
    concat = tf.sparse.concat(1, [sp, scaled])
    crossed = tf.sparse.to_dense(tf.sparse.maximum(sp, scaled)) + tf.sparse.add(sp, w[:3, :1] * tf.ones([3, 4]))
    return ([product, dense, summed, soft.values, sliced.values, reshaped.indices, concat.values,
             tf.sparse.to_dense(concat), crossed],
            g.loss(product, soft.values))


@case("tf.sparse", optimizer="adagrad")
def sparse_embedding_lookups(g):
    ids = g.input("ids", np.array([3, 0, 5, 2, 2], np.int64))
    weights = g.input("weights", np.array([1.0, 0.5, 2.0, 1.0, -1.0], np.float32))
    indices = tf.constant([[0, 0], [0, 1], [1, 0], [2, 0], [2, 1]], tf.int64)
    emb = g.var("embedding", [6, 4])
    sp_ids = tf.SparseTensor(indices, ids, [3, 2])
    sp_w = tf.SparseTensor(indices, weights, [3, 2])
    mean = tf.nn.embedding_lookup_sparse(emb, sp_ids, sp_w, combiner="mean")
    sqrtn = tf.nn.embedding_lookup_sparse(emb, sp_ids, None, combiner="sqrtn")
    safe = tf.nn.safe_embedding_lookup_sparse(emb, sp_ids, sp_w, combiner="sum")
    dense_lookup = tf.nn.embedding_lookup(emb, ids)
    return [mean, sqrtn, safe, dense_lookup], g.loss(mean, sqrtn, safe)


# ---------------------------------------------------------------------------
# tf.strings


@case("tf.strings")
def strings_tokenize_and_hash(g):
    text = g.input("text", [b"The Cat sat", b"  a DOG ran fast ", b"on the mat"], dtype=tf.string)
    emb = g.var("embedding", [16, 3])
    clean = tf.strings.strip(tf.strings.regex_replace(tf.strings.lower(text), " +", " "))
    tokens = tf.strings.split(clean)
    ids = tf.strings.to_hash_bucket_fast(tokens, 16)
    strong = tf.strings.to_hash_bucket_strong(tokens, 16, [1, 2])
    pooled = tf.reduce_mean(tf.nn.embedding_lookup(emb, ids), axis=1)
    lengths = tf.strings.length(text) + tf.strings.length(text, unit="UTF8_CHAR")
    joined = tf.strings.reduce_join(tokens, axis=1, separator="|")
    upper = tf.strings.upper(tf.strings.substr(clean, 0, 3))
    printed = tf.strings.as_string(pooled[:, 0], precision=3)
    number = tf.strings.to_number(tf.strings.as_string(lengths))
    formatted = tf.strings.format("{} has {}", (clean[0], lengths[0]))
    matched = tf.strings.regex_full_match(clean, ".*the.*")
    return ([pooled, ids.flat_values, strong.flat_values, lengths, joined, upper, printed, number, formatted, matched],
            g.loss(pooled))


@case("tf.strings", optimizer="sgd")
def strings_unicode_and_ngrams(g):
    text = g.input("text", ["héllo wörld".encode(), b"abc def", "ünï cödé x".encode()], dtype=tf.string)
    emb = g.var("embedding", [32, 2])
    words = tf.strings.split(text)
    grams = tf.strings.ngrams(words, 2, separator="_")
    chars = tf.strings.unicode_decode(text, "UTF-8")
    codes = tf.reduce_sum(chars, axis=1)
    encoded = tf.strings.unicode_encode(chars, "UTF-8")
    transcoded = tf.strings.unicode_transcode(text, "UTF-8", "UTF-16-BE")
    script = tf.strings.unicode_script(chars.flat_values)
    bytes_ = tf.strings.bytes_split(text)
    b64 = tf.io.encode_base64(text)
    vectors = tf.reduce_sum(tf.nn.embedding_lookup(emb, tf.strings.to_hash_bucket_fast(grams, 32)), axis=1)
    return ([vectors, grams.flat_values, codes, encoded, transcoded, script, bytes_.flat_values, b64,
             tf.io.decode_base64(b64)], g.loss(vectors))


# ---------------------------------------------------------------------------
# tf.random


@case("tf.random", optimizer="momentum")
def random_stateful_seeded(g):
    x = g.input("x", g.values(3, 4))
    w = g.var("w", [4])
    h = x * w
    noise = tf.random.normal([3, 4], seed=1) + tf.random.uniform([3, 4], seed=2) + tf.random.truncated_normal([3, 4], seed=3)
    picks = tf.random.categorical(h, 5, seed=4)
    shuffled = tf.random.shuffle(tf.range(10), seed=5)
    gamma = tf.random.gamma([2], 2.0, seed=6)
    poisson = tf.random.poisson([3], 4.0, seed=7)
    ints = tf.random.uniform([4], 0, 100, dtype=tf.int32, seed=8)
    noisy = h + noise
    return [noisy, picks, shuffled, gamma, poisson, ints], g.loss(noisy)


@case("tf.random")
def random_stateless(g):
    x = g.input("x", g.values(3, 4))
    w = g.var("w", [4])
    h = x * w
    seed = tf.constant([12, 34], tf.int32)
    noise = (tf.random.stateless_normal([3, 4], seed) + tf.random.stateless_uniform([3, 4], seed + 1)
             + tf.random.stateless_truncated_normal([3, 4], seed + 2))
    picks = tf.random.stateless_categorical(h, 4, seed + 3)
    ints = tf.random.stateless_uniform([5], seed + 4, minval=0, maxval=10, dtype=tf.int64)
    binomial = tf.random.stateless_binomial([4], seed + 5, counts=5.0, probs=0.5)
    flipped = tf.image.stateless_random_flip_left_right(tf.reshape(h, [1, 3, 4, 1]), seed + 6)
    gamma = tf.random.stateless_gamma([3], seed + 7, alpha=2.0)
    noisy = h + noise
    return [noisy, picks, ints, binomial, flipped, gamma], g.loss(noisy, flipped)


# ---------------------------------------------------------------------------
# tf.lookup


@case("tf.lookup")
def lookup_static_tables(g):
    tokens = g.input("tokens", [[b"cat", b"dog", b"emu"], [b"yak", b"cat", b"owl"]], dtype=tf.string)
    emb = g.var("embedding", [7, 3])
    vocab = tf.constant(["cat", "dog", "owl", "yak"])
    static = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(vocab, tf.constant([1, 2, 3, 4], tf.int64)), 0)
    ids = static.lookup(tokens)
    buckets = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(vocab, tf.constant([0, 1, 2, 3], tf.int64)), num_oov_buckets=3)
    with_oov = buckets.lookup(tokens)
    reverse = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant([1, 2, 3, 4], tf.int64), vocab), "?")
    names = reverse.lookup(ids)
    features = tf.reduce_sum(tf.nn.embedding_lookup(emb, with_oov), axis=1)
    return [ids, with_oov, names, features, static.size()], g.loss(features)


@case("tf.lookup", optimizer="sgd")
def lookup_keys_from_range(g):
    ids = g.input("ids", np.array([[0, 3, 9], [2, 2, 5]], np.int64))
    emb = g.var("embedding", [5, 2])
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.range(0, 10, dtype=tf.int64), tf.range(10, dtype=tf.int64) % 5), -1)
    mapped = table.lookup(ids)
    features = tf.reduce_sum(tf.nn.embedding_lookup(emb, tf.maximum(mapped, 0)), axis=1)
    return [mapped, features], g.loss(features)


@case("tf.lookup", optimizer="sgd")
def lookup_vocabulary_file(g):
    path = os.path.join(g.directory, "vocab.txt")
    with open(path, "w") as fh:
        fh.write("cat\ndog\nowl\n")
    g.files["vocabulary"] = path
    tokens = g.input("tokens", [[b"cat", b"owl"], [b"emu", b"dog"]], dtype=tf.string)
    emb = g.var("embedding", [4, 2])
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                      tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), num_oov_buckets=1)
    features = tf.reduce_sum(tf.nn.embedding_lookup(emb, table.lookup(tokens)), axis=1)
    return [features], g.loss(features)


# ---------------------------------------------------------------------------
# Control flow (v1: Enter/Exit/Switch/Merge; v2: While/If functions)


def _loop_and_branches(g):
    x = g.input("x", g.values(2, 3))
    flag = g.input("flag", np.array(True), shape=[])
    w = g.var("w", [3, 3], scale=0.4)
    b = g.var("b", [3], scale=0.1)

    def body(i, acc):
        return i + 1, tf.tanh(tf.matmul(acc, w) + b)

    steps, looped = tf.while_loop(lambda i, acc: i < 3, body, [tf.constant(0), x])
    branched = tf.cond(flag, lambda: looped * w[0], lambda: looped - b)
    picked = tf.case([(tf.reduce_sum(x) > 100.0, lambda: x * 0.0)], default=lambda: x * b)
    switch = tf.switch_case(tf.cast(tf.reduce_sum(x) > 0, tf.int32), [lambda: x + 1.0, lambda: x * w[1]])
    nested = tf.while_loop(lambda i, a: i < 2,
                           lambda i, a: (i + 1, tf.cond(tf.reduce_sum(a) > 0, lambda: a * 0.5, lambda: a + b)),
                           [tf.constant(0), branched])[1]
    return [steps, looped, branched, picked, switch, nested], g.loss(looped, branched, picked, switch, nested)


@case("control flow v1", cf_v1=True, resource=False, optimizer="momentum")
def control_flow_v1_loops_and_conds(g):
    return _loop_and_branches(g)


@case("control flow v2", optimizer="momentum")
def control_flow_v2_loops_and_conds(g):
    return _loop_and_branches(g)


@case("control flow v2", optimizer="adam")
def control_flow_v2_map_scan_fold(g):
    x = g.input("x", g.values(4, 3))
    w = g.var("w", [3], scale=0.5)
    mapped = tf.map_fn(lambda row: tf.reduce_sum(row * w), x)
    scanned = tf.scan(lambda acc, row: acc * 0.5 + row * w, x)
    folded = tf.foldl(lambda acc, row: acc + tf.nn.relu(row * w), x, initializer=tf.zeros([3]))
    vectorized = tf.vectorized_map(lambda row: tf.tanh(row * w), x)
    return [mapped, scanned, folded, vectorized], g.loss(mapped, scanned, folded, vectorized)


# ---------------------------------------------------------------------------
# TensorArrays


def _tensor_arrays(g):
    x = g.input("x", g.values(5, 3))
    w = g.var("w", [3, 3], scale=0.4)
    inputs = tf.TensorArray(tf.float32, size=5).unstack(x)
    states = tf.TensorArray(tf.float32, size=5, element_shape=[3], clear_after_read=False)

    def body(i, h, out):
        h = tf.tanh(tf.linalg.matvec(w, inputs.read(i)) + h)
        return i + 1, h, out.write(i, h)

    _, last, states = tf.while_loop(lambda i, h, out: i < 5, body, [tf.constant(0), tf.zeros([3]), states])
    stacked = states.stack()
    gathered = states.gather([4, 0, 2])
    concat = tf.TensorArray(tf.float32, size=2, infer_shape=False).write(0, x[:2]).write(1, x[3:]).concat()
    split = tf.TensorArray(tf.float32, size=2, infer_shape=False).split(tf.reshape(stacked, [-1]), [9, 6]).read(1)
    return [last, stacked, gathered, concat, split, states.size()], g.loss(last, stacked, gathered, split)


@case("TensorArray", cf_v1=True, optimizer="rmsprop")
def tensor_array_v1(g):
    return _tensor_arrays(g)


@case("TensorArray", optimizer="rmsprop")
def tensor_array_v2(g):
    return _tensor_arrays(g)


# ---------------------------------------------------------------------------
# scatter / gather / segment


@case("scatter/gather/segment", optimizer="adagrad")
def gather_and_segments(g):
    ids = g.input("ids", np.array([4, 0, 2, 2, 1], np.int32))
    segments = g.input("segments", np.array([0, 0, 1, 1, 3], np.int32))
    table = g.var("table", [5, 3])
    rows = tf.gather(table, ids)
    cols = tf.gather(table, [2, 0], axis=1)
    batched = tf.gather(tf.reshape(table[:4], [2, 2, 3]), [[1, 0], [0, 0]], batch_dims=1)
    nd = tf.gather_nd(table, [[0, 1], [4, 2], [3, 0]])
    seg = tf.math.segment_sum(rows, segments) + tf.math.segment_mean(rows, segments)
    unsorted = tf.math.unsorted_segment_max(rows, segments, 4) + tf.math.unsorted_segment_sum(rows, segments, 4)
    sqrt_n = tf.sparse.segment_sqrt_n(table, ids, segments) + tf.sparse.segment_mean(table, ids, segments)
    updated = tf.tensor_scatter_nd_update(table, [[1], [3]], rows[:2]) + tf.tensor_scatter_nd_add(table, [[0]], rows[:1])
    maxed = tf.tensor_scatter_nd_max(table, [[2]], rows[2:3])
    where = tf.where(rows > 0)
    boolean = tf.boolean_mask(rows, rows[:, 0] > 0)
    unique, index = tf.unique(ids)
    return ([rows, cols, batched, nd, seg, unsorted, sqrt_n, updated, maxed, where, boolean, unique, index],
            g.loss(rows, cols, nd, seg, unsorted, sqrt_n, updated, maxed))


@case("scatter/gather/segment", optimizer="sgd")
def scatter_nd(g):
    ids = g.input("ids", np.array([[1], [3], [1]], np.int32))
    w = g.var("w", [3, 2])
    scattered = tf.scatter_nd(ids, w, [5, 2])
    dense_grad = tf.reduce_sum(scattered * tf.constant(np.arange(10, dtype=np.float32).reshape(5, 2)))
    return [scattered], dense_grad + g.loss(scattered)


@case("scatter/gather/segment", optimizer="momentum")
def dynamic_partition_and_stitch(g):
    x = g.input("x", g.values(6, 2))
    parts_of = g.input("parts", np.array([0, 1, 0, 2, 1, 0], np.int32))
    w = g.var("w", [2])
    parts = tf.dynamic_partition(x * w, parts_of, 3)
    indices = tf.dynamic_partition(tf.range(6), parts_of, 3)
    stitched = tf.dynamic_stitch(indices, [parts[0] * 2.0, parts[1], parts[2] - 1.0])
    return parts + [stitched], g.loss(stitched)


# ---------------------------------------------------------------------------
# CTC


@case("CTC decoders", optimizer="adam")
def ctc_greedy_and_beam_search(g):
    x = g.input("features", g.values(6, 2, 4))  # time-major [T, B, F]
    w = g.var("w", [4, 5])
    logits = tf.einsum("tbf,fc->tbc", x, w)
    lengths = tf.constant([6, 5], tf.int32)
    labels = tf.SparseTensor(tf.constant([[0, 0], [0, 1], [1, 0]], tf.int64), tf.constant([1, 3, 2], tf.int32), [2, 2])
    loss = tf.reduce_mean(tf1.nn.ctc_loss(labels, logits, lengths))
    (greedy,), greedy_score = tf.nn.ctc_greedy_decoder(logits, lengths)
    (beam,), beam_score = tf.nn.ctc_beam_search_decoder(logits, lengths, beam_width=4, top_paths=1)
    v2 = tf.nn.ctc_loss(tf.constant([[1, 3], [2, 0]]), logits, tf.constant([2, 1]), lengths, logits_time_major=True,
                        blank_index=-1)
    return ([greedy.indices, greedy.values, greedy.dense_shape, greedy_score, beam.indices, beam.values, beam_score,
             tf.sparse.to_dense(beam), v2], loss)


# ---------------------------------------------------------------------------
# parse_example and decoders of serialized records


def _example(value, ids, tag):
    return tf.train.Example(features=tf.train.Features(feature={
        "value": tf.train.Feature(float_list=tf.train.FloatList(value=value)),
        "ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
        "tag": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tag])),
    })).SerializeToString()


@case("parse_example", optimizer="adam")
def parse_example_dense_and_sparse(g):
    serialized = g.input("examples", [_example([1.0, 2.0, 3.0], [1, 4], b"a"), _example([0.5, -1.0, 0.0], [2], b"b"),
                                      _example([2.0, 0.0, 1.5], [], b"c")], dtype=tf.string)
    parsed = tf.io.parse_example(serialized, {
        "value": tf.io.FixedLenFeature([3], tf.float32),
        "ids": tf.io.VarLenFeature(tf.int64),
        "tag": tf.io.FixedLenFeature([], tf.string),
        "missing": tf.io.FixedLenFeature([2], tf.float32, default_value=[7.0, 8.0]),
    })
    single = tf.io.parse_single_example(serialized[0], {"value": tf.io.FixedLenFeature([3], tf.float32)})
    emb = g.var("embedding", [5, 3])
    w = g.var("w", [3, 2])
    pooled = tf.nn.safe_embedding_lookup_sparse(emb, parsed["ids"], None, combiner="sum")
    logits = tf.matmul(parsed["value"] * parsed["missing"][:, :1], w) + tf.matmul(pooled, w)
    return [logits, parsed["tag"], parsed["ids"].values, single["value"]], g.loss(logits)


@case("parse_example", optimizer="sgd")
def decode_csv_and_raw(g):
    lines = g.input("lines", [b"1.5,2,abc", b"-0.5,,x"], dtype=tf.string)
    raw = g.input("raw", [np.arange(4, dtype=np.float32).tobytes(), np.ones(4, np.float32).tobytes()], dtype=tf.string)
    w = g.var("w", [4])
    first, second, third = tf.io.decode_csv(lines, [[0.0], [7], [""]])
    floats = tf.io.decode_raw(raw, tf.float32)
    out = floats * w + first[:, None] + tf.cast(second, tf.float32)[:, None]
    return [out, third], g.loss(out)


# ---------------------------------------------------------------------------
# feature columns (tf.compat.v1.feature_column)


@case("feature columns", optimizer="adagrad")
def feature_columns_input_layer(g):
    fc = tf1.feature_column
    features = {
        "age": g.input("age", np.array([[23.0], [61.0], [35.0]], np.float32)),
        "city": g.input("city", [[b"paris"], [b"oslo"], [b"lima"]], dtype=tf.string),
        "word": g.input("word", [[b"tea"], [b"cake"], [b"tea"]], dtype=tf.string),
    }
    age = fc.numeric_column("age")
    buckets = fc.bucketized_column(age, [30.0, 50.0])
    city = fc.categorical_column_with_vocabulary_list("city", ["paris", "oslo", "rome"], num_oov_buckets=1)
    word = fc.categorical_column_with_hash_bucket("word", 8)
    crossed = fc.crossed_column([buckets, "city"], 6)
    columns = [age, buckets, fc.indicator_column(city), fc.embedding_column(word, 2, initializer=tf1.ones_initializer()),
               fc.indicator_column(crossed)]
    net = fc.input_layer(features, columns)
    w = g.var("w", [int(net.shape[1]), 1], scale=0.1)
    logits = tf.matmul(net, w)
    return [net, logits], g.loss(logits)


# ---------------------------------------------------------------------------
# More of the core array API, ragged tensors, fake quantisation, tf.function calls


@case("tf.math", optimizer="adam")
def array_sort_search_and_shape(g):
    x = g.input("x", g.values(3, 6))
    lengths = g.input("lengths", np.array([2, 6, 4], np.int32))
    w = g.var("w", [6])
    h = x * w
    ordered = tf.sort(h, axis=1, direction="DESCENDING")
    order = tf.argsort(h, axis=1, stable=True)
    found = tf.searchsorted(tf.sort(h, axis=1), tf.zeros([3, 2]) + tf.constant([-0.1, 0.2]))
    histogram = tf.histogram_fixed_width(h, [-1.0, 1.0], nbins=5)
    mask = tf.sequence_mask(lengths, 6)
    masked = tf.where(mask, h, tf.zeros_like(h))
    hot = tf.one_hot(tf.argmax(h, axis=1), 6, on_value=2.0, off_value=-1.0)
    rolled = tf.roll(h, shift=[1, -2], axis=[0, 1])
    reversed_ = tf.reverse_sequence(h, tf.cast(lengths, tf.int64), seq_axis=1, batch_axis=0)
    padded = tf.pad(h, [[1, 1], [2, 2]], mode="REFLECT") + tf.pad(h, [[1, 1], [2, 2]], mode="SYMMETRIC")
    grid_x, grid_y = tf.meshgrid(w[:3], w[3:])
    confusion = tf.math.confusion_matrix(tf.argmax(h, axis=1), [0, 5, 2], num_classes=6)
    unravel = tf.unravel_index(tf.cast(tf.argmax(tf.reshape(h, [-1])), tf.int32), [3, 6])
    tiled = tf.tile(h[:1], [2, 1]) + tf.broadcast_to(w, [2, 6])
    cumulative = tf.math.cumulative_logsumexp(h, axis=1)
    return ([ordered, order, found, histogram, masked, hot, rolled, reversed_, padded, grid_x * grid_y, confusion,
             unravel, tiled, cumulative], g.loss(ordered, masked, rolled, reversed_, padded, tiled, cumulative))


@case("tf.ragged", optimizer="sgd")
def ragged_rows(g):
    values = g.input("values", np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], np.float32))
    splits = g.input("row_splits", np.array([0, 2, 2, 5, 6], np.int64))
    w = g.var("w", [1], offset=1.0, scale=0.1)
    rt = tf.RaggedTensor.from_row_splits(values * w, splits)
    dense = rt.to_tensor(default_value=-1.0)
    sums = tf.reduce_sum(rt, axis=1) + tf.reduce_max(rt, axis=1) * 0.0
    means = tf.math.reduce_mean(rt + 1.0, axis=1)
    lengths = rt.row_lengths()
    sliced = rt[:, :1].to_tensor()
    rows = tf.ragged.range(tf.cast(lengths, tf.int32)).flat_values
    squared = tf.ragged.map_flat_values(tf.square, rt).flat_values
    boolean = tf.ragged.boolean_mask(dense, dense > 2.0).to_tensor()
    return [dense, sums, tf.where(tf.math.is_nan(means), tf.zeros_like(means), means), lengths, sliced, rows, squared,
            boolean], g.loss(dense, sums, squared)


@case("tf.quantization", optimizer="momentum")
def fake_quantization(g):
    x = g.input("x", g.values(4, 5))
    w = g.var("w", [5, 3])
    lo = tf1.get_variable("min", initializer=tf.constant(-1.0), use_resource=g.resource)
    hi = tf1.get_variable("max", initializer=tf.constant(1.0), use_resource=g.resource)
    h = tf.quantization.fake_quant_with_min_max_vars(tf.matmul(x, w), lo, hi, num_bits=8)
    per_channel = tf.quantization.fake_quant_with_min_max_vars_per_channel(h, lo + tf.zeros([3]), hi + tf.zeros([3]))
    args = tf.quantization.fake_quant_with_min_max_args(x, -2.0, 2.0, num_bits=4)
    qdq = tf.quantization.quantize_and_dequantize_v2(h, -1.0, 1.0, range_given=True)
    return [h, per_channel, args, qdq], g.loss(h, per_channel)


@case("tf.function", optimizer="adam")
def function_calls_with_captured_variables(g):
    x = g.input("x", g.values(3, 4))
    w = g.var("w", [4, 2])
    b = g.var("b", [2], scale=0.1)

    @tf.function
    def dense(inputs):
        return tf.nn.relu(tf.matmul(inputs, w) + b)

    @tf.function
    def twice(inputs):
        return dense(inputs) + dense(inputs * 0.5)

    @tf.custom_gradient
    def clip_gradient(t):
        return tf.identity(t), lambda dy: tf.clip_by_value(dy, -0.1, 0.1)

    out = twice(x)
    clipped = clip_gradient(tf.matmul(x, w))
    return [out, clipped], g.loss(out, clipped)


@case("tf.function", optimizer="adam")
def function_call_read_for_its_gradient(g):
    """A trained tf.function call: the graph calls its __forward_ twin, which also returns the
    variable's value it read (for the gradient)."""
    x = g.input("x", g.values(3, 4))
    w = g.var("w", [4, 2])

    @tf.function
    def dense(inputs):
        return tf.nn.relu(tf.matmul(inputs, w))

    out = dense(x)
    return [out], g.loss(out)



@case("tf.lookup", optimizer="adagrad")
def lookup_inside_map_fn(g):
    tokens = g.input("tokens", [[b"cat", b"dog", b"emu"], [b"yak", b"cat", b"owl"]], dtype=tf.string)
    emb = g.var("embedding", [5, 3])
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(["cat", "dog", "owl", "yak"]),
                                            tf.constant([1, 2, 3, 4], tf.int64)), 0)
    ids = tf.map_fn(table.lookup, tokens, fn_output_signature=tf.int64)
    branch = tf.cond(tf.size(tokens) > 3, lambda: table.lookup(tokens[0]), lambda: tf.zeros([3], tf.int64))
    features = tf.reduce_sum(tf.nn.embedding_lookup(emb, ids), axis=1)
    return [ids, branch, features], g.loss(features)


@case("tf.lookup", optimizer="sgd")
def lookup_mutable_table_saved(g):
    """A MutableHashTable filled while training: its contents are in the checkpoint."""
    tokens = g.input("tokens", [b"cat", b"dog", b"emu"], dtype=tf.string)
    emb = g.var("embedding", [4, 2])
    table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0)
    g.before_save.append(table.insert(tf.constant(["cat", "dog"]), tf.constant([1, 3], tf.int64)))
    ids = table.lookup(tokens)
    features = tf.nn.embedding_lookup(emb, ids)
    return [ids, features], g.loss(features)


@case("control flow v1 / tf.lookup", cf_v1=True, resource=False, optimizer="sgd")
def lookup_inside_while_v1(g):
    tokens = g.input("tokens", [[b"cat", b"dog"], [b"yak", b"emu"], [b"owl", b"cat"]], dtype=tf.string)
    emb = g.var("embedding", [5, 2])
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(["cat", "dog", "owl", "yak"]),
                                            tf.constant([1, 2, 3, 4], tf.int64)), 0)

    def body(i, acc):
        return i + 1, acc + tf.reduce_sum(tf.nn.embedding_lookup(emb, table.lookup(tokens[i])), axis=0)

    _, total = tf.while_loop(lambda i, acc: i < 3, body, [tf.constant(0), tf.zeros([2])])
    return [total], g.loss(total)


@case("tf.debugging", optimizer="adam")
def debugging_asserts_and_print(g):
    x = g.input("x", np.abs(g.values(3, 4)) + 0.1)
    w = g.var("w", [4], offset=1.0, scale=0.1)
    h = x * w
    checks = [tf.debugging.assert_positive(h), tf.debugging.assert_all_finite(h, "finite"),
              tf.debugging.assert_equal(tf.shape(h)[1], 4), tf.print("h:", tf.reduce_sum(h))]
    with tf.control_dependencies(checks):
        checked = tf.debugging.check_numerics(tf.identity(h), "numerics")
    shaped = tf.ensure_shape(checked, [None, 4])
    return [shaped], g.loss(shaped)


@case("tf.io", optimizer="momentum")
def io_codecs_and_serialization(g):
    x = g.input("x", np.abs(g.values(2, 4, 4, 3)) % 1.0)
    w = g.var("w", [3], offset=1.0, scale=0.1)
    img = tf.clip_by_value(x * w, 0.0, 1.0)
    pixels = tf.cast(img[0] * 255.0, tf.uint8)
    png = tf.io.decode_png(tf.io.encode_png(pixels))
    jpeg = tf.io.decode_jpeg(tf.io.encode_jpeg(pixels, quality=95))
    generic = tf.io.decode_image(tf.io.encode_png(pixels), expand_animations=False)
    parsed = tf.io.parse_tensor(tf.io.serialize_tensor(img), tf.float32)
    zipped = tf.io.decode_compressed(tf.io.encode_base64(tf.strings.as_string(w)[0]), compression_type="")
    wav, rate = tf.audio.decode_wav(tf.audio.encode_wav(tf.reshape(img[0, :, :, :1], [16, 1]) * 0.5, 8000))
    return [png, jpeg, generic, parsed, zipped, wav, rate], g.loss(img, parsed)


@case("tf.sets / tf.linalg", optimizer="rmsprop")
def sets_and_more_linalg(g):
    a = g.input("a", np.array([[1, 2, 3, 4], [2, 4, 6, 8]], np.int32))
    x = g.input("x", g.values(3, 3, scale=0.2))
    w = g.var("w", [3, 3], scale=0.3)
    both = tf.sets.intersection(a, tf.constant([[2, 4, 5, 9], [1, 2, 4, 8]], tf.int32))
    union = tf.sets.union(a, tf.constant([[9, 9, 9, 9], [1, 1, 1, 1]], tf.int32))
    size = tf.sets.size(both)
    m = w + x
    expm = tf.linalg.expm(m * 0.5)
    sqrtm = tf.linalg.sqrtm(tf.matmul(m, m, transpose_b=True) + tf.eye(3))
    eigvals = tf.math.real(tf.linalg.eigvals(m))
    diag = tf.linalg.tridiagonal_solve([m[0], m[1] + 3.0, m[2]], tf.ones([3]), diagonals_format="sequence")
    pinv = tf.linalg.pinv(m)
    lstsq = tf.linalg.lstsq(m + 2.0 * tf.eye(3), tf.ones([3, 1]))
    return ([tf.sparse.to_dense(both), union.values, size, expm, sqrtm, eigvals, diag, pinv, lstsq],
            g.loss(expm, sqrtm, diag, lstsq))


@case("security policy", optimizer="sgd")
def py_function_preprocessing(g):
    x = g.input("x", g.values(3, 4))
    w = g.var("w", [4])
    cleaned = tf.py_function(lambda t: np.nan_to_num(t.numpy()), [x], tf.float32)
    cleaned.set_shape([None, 4])
    out = cleaned * w
    return [out], g.loss(out)


@case("security policy", optimizer="sgd")
def read_file_in_the_graph(g):
    path = os.path.join(g.directory, "scale.txt")
    with open(path, "w") as fh:
        fh.write("2.5")
    g.files["scale"] = path
    x = g.input("x", g.values(3, 4))
    w = g.var("w", [4])
    scale = tf.strings.to_number(tf.io.read_file(path))
    out = x * w * scale
    return [out], g.loss(out)


@case("control flow v2", optimizer="adagrad")
def embedding_lookups_inside_while_v2(g):
    ids = g.input("ids", np.array([[1, 4, 0], [3, 3, 2]], np.int32))
    words = g.input("words", [[b"a b", b"c"], [b"d e f", b""]], dtype=tf.string)
    emb = g.var("embedding", [5, 3])
    parts = tf1.get_variable("sharded", shape=[6, 3], initializer=tf1.random_normal_initializer(seed=1),
                             partitioner=tf1.fixed_size_partitioner(2), use_resource=True)

    def body(t, acc, count):
        step = tf.nn.embedding_lookup(emb, ids[:, t]) + tf.nn.embedding_lookup(parts, ids[:, t])
        tokens = tf.strings.split(words[:, t % 2]).to_tensor(default_value="")
        return t + 1, acc + tf.tanh(step), count + tf.reduce_sum(tf.cast(tf.strings.length(tokens) > 0, tf.int32))

    _, total, count = tf.while_loop(lambda t, acc, count: t < 3, body, [tf.constant(0), tf.zeros([2, 3]), tf.constant(0)])
    return [total, count], g.loss(total)


@case("tf.sparse", optimizer="sgd")
def sparse_placeholder_input(g):
    sp = tf1.sparse_placeholder(tf.float32, shape=[None, 4], name="sp")
    g.feeds.update({sp.indices.name: np.array([[0, 1], [1, 3], [2, 0]], np.int64),
                    sp.values.name: np.array([1.0, -2.0, 0.5], np.float32),
                    sp.dense_shape.name: np.array([3, 4], np.int64)})
    g.inputs += [sp.indices.name, sp.values.name, sp.dense_shape.name]
    w = g.var("w", [4, 2])
    out = tf.sparse.sparse_dense_matmul(sp, w)
    return [out, tf.sparse.reduce_sum(sp, axis=1)], g.loss(out)
