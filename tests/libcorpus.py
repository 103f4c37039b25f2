"""A corpus from code nobody here wrote (issue 33): small models built by model
libraries that others publish on PyPI, calling those libraries' own model-building
functions, trained a few steps the way each library trains (its compile/loss/optimizer
helpers where it has them) and saved as the library or its users save them.

The libraries are installed by `make libcorpus-env`, never copied here:
  * TF 2.21 + Keras 2 (tf-keras), graph mode, in .venv-libcorpus: the libraries of
    requirements-libcorpus.txt over the TensorFlow, tf-keras and tf-slim of tffreeze's
    own .venv (a .pth file): keras-bert, keras-transformer, deepctr, efficientnet,
    segmentation-models, image-classifiers, spektral, tensorflow-recommenders,
    keras-tcn, tf-slim;
  * TF 1.15 (the venv of `make tf115`, Python 3.7) for libraries that need TF1
    (requirements-libcorpus-tf1.txt, in .venv-libcorpus-tf1): bert-tensorflow, tflearn.
tffreeze's server (TF 2.21) freezes the saved files of both.

Run as a script in the model's environment, one model per process:

    python tests/libcorpus.py NAME OUT_DIR

which writes the checkpoint into OUT_DIR with ``corpus.json`` (outputs, data inputs,
library and version, the environment it was built in, and the citation: which module
and function of the library reads those outputs at inference), ``io.npz`` (the feeds
and the checkpoint session's outputs for them) and ``feeds/*.npy`` (the feeds, one
file each, named in corpus.json). ``build_all`` builds what is missing, cached by
fingerprint under build/. This file runs under Python 3.7 too (the TF 1.15 builders).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVS = {  # environment -> (python, extra PYTHONPATH, what it is)
    "tf2": (os.path.join(REPO, ".venv-libcorpus", "bin", "python"), None, "TF 2.21 + tf-keras 2.21 (.venv-libcorpus)"),
    "tf1": (os.path.join(REPO, ".tf115", "bin", "python"), os.path.join(REPO, ".venv-libcorpus-tf1"),
            "TF 1.15.0, Python 3.7 (.tf115 + .venv-libcorpus-tf1)"),
}

# name -> (environment, library, citation of what reads the outputs at inference)
MODELS = {
    "keras_bert_pretrain": ("tf2", "keras-bert",
                            "keras_bert.get_model(training=True) outputs [MLM, NSP], as keras_bert's own "
                            "compile_model/fit and Model.predict read them"),
    "keras_bert_classifier": ("tf2", "keras-bert",
                              "keras_bert.get_model + the NSP-Dense layer's output under a softmax head, the "
                              "fine-tuning recipe of keras-bert's README (Model.predict reads the head)"),
    "keras_transformer": ("tf2", "keras-transformer",
                          "keras_transformer.get_model output (Decoder-Output softmax), what "
                          "keras_transformer.decode feeds back token by token via model.predict"),
    "deepctr_deepfm": ("tf2", "deepctr", "deepctr.models.DeepFM output (PredictionLayer, task='binary'), "
                       "as deepctr's examples read it with model.predict"),
    "deepctr_xdeepfm": ("tf2", "deepctr", "deepctr.models.xDeepFM output (PredictionLayer), model.predict"),
    "deepctr_din": ("tf2", "deepctr", "deepctr.models.DIN output (PredictionLayer) with behaviour sequences, "
                    "as examples/run_din.py reads it"),
    "deepctr_dcn": ("tf2", "deepctr", "deepctr.models.DCN output (PredictionLayer, task='regression'), "
                    "model.predict"),
    "efficientnet_tiny": ("tf2", "efficientnet", "efficientnet.model.EfficientNet (injected with tf.keras "
                          "by efficientnet.inject_tfkeras_modules) 'probs' softmax, model.predict"),
    "sm_unet_resnet18": ("tf2", "segmentation-models", "segmentation_models.Unet(backbone 'resnet18' from "
                         "image-classifiers) final softmax mask, model.predict"),
    "sm_linknet_mobilenetv2": ("tf2", "segmentation-models", "segmentation_models.Linknet(backbone "
                               "'mobilenetv2') final sigmoid mask, model.predict"),
    "sm_fpn_efficientnet": ("tf2", "segmentation-models", "segmentation_models.FPN(backbone 'efficientnetb0' "
                            "from efficientnet) final softmax mask, model.predict"),
    "spektral_gcn": ("tf2", "spektral", "spektral.models.GCN (two GCNConv) softmax node labels on "
                     "spektral.utils.gcn_filter'ed adjacency, as examples/node_prediction/citation_gcn.py "
                     "predicts"),
    "tfrs_dcn_ranking": ("tf2", "tensorflow-recommenders", "tfrs.layers.dcn.Cross in a DCN ranking model "
                         "trained with tfrs.tasks.Ranking's loss; the rating head is what the DCN tutorial "
                         "serves"),
    "deepctr_autoint": ("tf2", "deepctr", "deepctr.models.AutoInt output (PredictionLayer), model.predict"),
    "image_classifiers_resnet18": ("tf2", "image-classifiers", "classification_models.tfkeras.Classifiers"
                                   ".get('resnet18') softmax output, model.predict"),
    "keras_tcn": ("tf2", "keras-tcn", "tcn.compiled_tcn(return_sequences=False) softmax output, model.predict"),
    "slim_inception_v2": ("tf2", "tf-slim", "tf_slim.nets.inception_v2.inception_v2 end_points['Predictions'] "
                          "(Predictions/Reshape_1), the output node slim's README freezes an exported "
                          "inference graph with"),
    "bert_classifier": ("tf1", "bert-tensorflow", "bert.run_classifier.create_model probabilities, what "
                        "model_fn_builder's PREDICT mode returns as predictions={'probabilities': ...}"),
    "tflearn_convnet": ("tf1", "tflearn", "tflearn.DNN.predict of the net before tflearn.regression "
                        "(softmax), with tflearn's training-mode variable"),
    "tflearn_lstm": ("tf1", "tflearn", "tflearn.DNN.predict of an embedding + tflearn.lstm + softmax "
                     "classifier (tflearn's examples/nlp/lstm.py)"),
}


def fingerprint() -> str:
    """Changes whenever the builders or the pinned libraries do: the cache key."""
    digest = hashlib.sha256()
    for path in (os.path.abspath(__file__), os.path.join(REPO, "requirements-libcorpus.txt"),
                 os.path.join(REPO, "requirements-libcorpus-tf1.txt")):
        with open(path, "rb") as fh:
            digest.update(fh.read().split(b"# --- " + b"grading (")[0])  # the builders, not the grading
    return digest.hexdigest()[:16]


def default_root() -> str:
    return os.path.join(REPO, "build", "libcorpus-%s" % fingerprint())


# --- helpers (run inside the corpus environments) ---------------------------------

def _tf2():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras is Keras 2 (tf-keras): graph mode
    os.environ["TF_KERAS"] = "1"  # keras-bert and its family: use tf.keras, not standalone keras
    os.environ["SM_FRAMEWORK"] = "tf.keras"  # segmentation-models
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    tf.compat.v1.disable_v2_behavior()
    return tf, tf.compat.v1


def _tf1():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
    return tf, tf.compat.v1


def _seed(tf, seed=11):
    random.seed(seed)
    np.random.seed(seed)
    tf.compat.v1.set_random_seed(seed)


def _record(tf1, graph, prefix, out_dir, name, outputs, feeds, note="", expected=None, session_feed=None):
    """Restore the checkpoint into ``graph`` and record its outputs on ``feeds`` (or take
    ``expected``, the values the library's own inference code returned, after checking
    they are the checkpoint session's)."""
    # a data input is one the outputs read: the library's model may take more (keras-bert's
    # Input-Masked, which only its loss reads; DIN's seq_length, which its attention does not use)
    needed, stack = set(), [graph.get_tensor_by_name(o).op for o in outputs]
    while stack:
        op = stack.pop()
        if op.name not in needed:
            needed.add(op.name)
            stack.extend([t.op for t in op.inputs] + list(op.control_inputs))
    feeds = {k: v for k, v in feeds.items() if k.split(":")[0] in needed}
    with graph.as_default(), tf1.Session(graph=graph) as sess:
        tf1.train.Saver().restore(sess, prefix)
        feed = dict(feeds)
        feed.update(session_feed or {})
        values = sess.run(outputs, feed_dict=feed)
    if expected is not None:
        for got, want in zip(values, expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    env, library, citation = MODELS[name]
    np.savez(os.path.join(out_dir, "io.npz"),
             **{"in:" + k: v for k, v in feeds.items()}, **{"out:" + k: v for k, v in zip(outputs, values)})
    os.makedirs(os.path.join(out_dir, "feeds"), exist_ok=True)
    feed_files = {}
    for i, (k, v) in enumerate(sorted(feeds.items())):
        feed_files[k] = "feeds/%d.npy" % i
        np.save(os.path.join(out_dir, feed_files[k]), v)
    with open(os.path.join(out_dir, "corpus.json"), "w") as fh:
        json.dump({"outputs": list(outputs), "inputs": sorted(feeds), "prefix": os.path.basename(prefix),
                   "feed_files": feed_files, "library": library, "version": _version(library),
                   "env": ENVS[env][2], "tensorflow": _version("tensorflow-cpu"), "citation": citation,
                   "note": note}, fh, indent=1)


def _version(dist):
    try:
        from importlib.metadata import version
    except ImportError:  # Python 3.7
        import pkg_resources
        return pkg_resources.get_distribution(dist).version
    return version(dist)


def _keras_train_save_record(tf, tf1, name, out_dir, model, x, y, infer_x, epochs=1, batch_size=2):
    """Keras models: model.fit (graph mode), saved by tf.train.Saver from Keras' session,
    outputs recorded for ``infer_x`` as model.predict returns them."""
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    sess = tf1.keras.backend.get_session()
    predicted = model.predict(infer_x, verbose=0)
    predicted = predicted if isinstance(predicted, list) else [predicted]
    graph = sess.graph
    with graph.as_default():
        prefix = tf1.train.Saver().save(sess, os.path.join(out_dir, "model.ckpt"), global_step=2)
    inputs = model.inputs
    if isinstance(infer_x, dict):
        feeds = {t.name: np.asarray(infer_x[n]) for t, n in zip(inputs, model.input_names)}
    else:
        xs = infer_x if isinstance(infer_x, list) else [infer_x]
        feeds = {t.name: np.asarray(v) for t, v in zip(inputs, xs)}
    _record(tf1, graph, prefix, out_dir, name, [t.name for t in model.outputs], feeds, expected=predicted)


def _keras_start(seed=11):
    tf, tf1 = _tf2()
    import tf_keras as keras
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    _seed(tf, seed)
    return tf, tf1, keras


# --- keras-bert, keras-transformer -------------------------------------------------

_PAIRS = [[["all", "work", "and", "no", "play"], ["makes", "jack", "a", "dull", "boy"]],
          [["from", "the", "day", "forth"], ["my", "arm", "changed"]],
          [["the", "quick", "brown", "fox"], ["jumps", "over", "the", "lazy", "dog"]]]


def _keras_bert(tf):
    """keras-bert 0.89's AdamWarmup subclasses tf.keras.optimizers.Optimizer, which was
    OptimizerV2 until TF 2.11 and is now another class: import it with the legacy
    (OptimizerV2) class under that name, as users on TF >= 2.11 do."""
    import importlib
    legacy = tf.keras.optimizers.legacy.Optimizer
    modules = [importlib.import_module("tensorflow.keras.optimizers")] + [
        m for n, m in list(sys.modules.items()) if n.endswith("keras.optimizers") and hasattr(m, "Optimizer")]
    saved = [(m, m.Optimizer) for m in modules]
    for m in modules:
        m.Optimizer = legacy
    try:
        import keras_bert
    finally:
        for m, cls in saved:
            m.Optimizer = cls
    return keras_bert


def _bert_vocab():
    import keras_bert
    token_dict = keras_bert.get_base_dict()
    for pair in _PAIRS:
        for token in pair[0] + pair[1]:
            token_dict.setdefault(token, len(token_dict))
    return token_dict, list(token_dict.keys())


def keras_bert_pretrain(out_dir):
    tf, tf1, keras = _keras_start()
    keras_bert = _keras_bert(tf)
    token_dict, token_list = _bert_vocab()
    model = keras_bert.get_model(token_num=len(token_dict), head_num=2, transformer_num=1, embed_dim=16,
                                 feed_forward_dim=32, seq_len=16, pos_num=16, dropout_rate=0.05)
    keras_bert.compile_model(model, decay_steps=10, warmup_steps=2, learning_rate=1e-3)
    x, y = keras_bert.gen_batch_inputs(_PAIRS * 2, token_dict, token_list, seq_len=16, mask_rate=0.3)
    infer_x, _ = keras_bert.gen_batch_inputs(_PAIRS[:2], token_dict, token_list, seq_len=16, mask_rate=0.3)
    _keras_train_save_record(tf, tf1, "keras_bert_pretrain", out_dir, model, x, y, infer_x)


def keras_bert_classifier(out_dir):
    tf, tf1, keras = _keras_start()
    keras_bert = _keras_bert(tf)
    token_dict, _ = _bert_vocab()
    bert = keras_bert.get_model(token_num=len(token_dict), head_num=2, transformer_num=1, embed_dim=16,
                                feed_forward_dim=32, seq_len=16, pos_num=16, dropout_rate=0.05,
                                training=True, trainable=True)
    inputs = bert.inputs[:2]  # the README's fine-tuning: tokens and segments, the NSP-Dense features
    outputs = keras.layers.Dense(2, activation="softmax", name="label")(bert.get_layer("NSP-Dense").output)
    model = keras.models.Model(inputs, outputs)
    total, warmup = keras_bert.calc_train_steps(num_example=6, batch_size=2, epochs=1, warmup_proportion=0.3)
    model.compile(keras_bert.AdamWarmup(total, warmup, learning_rate=1e-3), loss="sparse_categorical_crossentropy")
    tokenizer = keras_bert.Tokenizer(token_dict)
    rng = np.random.default_rng(2)

    def encode(pairs):
        ids, segs = zip(*[tokenizer.encode(" ".join(a), " ".join(b), max_len=16) for a, b in pairs])
        return [np.array(ids, np.float32), np.array(segs, np.float32)]
    x = encode(_PAIRS * 2)
    _keras_train_save_record(tf, tf1, "keras_bert_classifier", out_dir, model, x, rng.integers(0, 2, 6),
                             encode(_PAIRS[1:]))


def keras_transformer(out_dir):
    tf, tf1, keras = _keras_start()
    import keras_transformer as kt
    model = kt.get_model(token_num=20, embed_dim=16, encoder_num=1, decoder_num=1, head_num=2, hidden_dim=32,
                         dropout_rate=0.05, use_same_embed=True)
    model.compile("adam", "sparse_categorical_crossentropy")  # keras-transformer's README
    rng = np.random.default_rng(4)
    enc = rng.integers(3, 20, (6, 7))
    dec_in = np.concatenate([np.ones((6, 1), int), enc[:, :-1]], 1)
    dec_out = enc[:, :, None]
    infer = [rng.integers(3, 20, (2, 7)), np.concatenate([np.ones((2, 1), int), rng.integers(3, 20, (2, 6))], 1)]
    _keras_train_save_record(tf, tf1, "keras_transformer", out_dir, model, [enc, dec_in], dec_out,
                             [v.astype(np.float32) for v in infer])


# --- deepctr ------------------------------------------------------------------------

def _ctr_data(rng, n, sparse, dense, vocab=10):
    data = {f: rng.integers(0, vocab, (n, 1)).astype(np.int32) for f in sparse}
    data.update({f: rng.random((n, 1)).astype(np.float32) for f in dense})
    return data


def _deepctr(out_dir, name, build, task="binary"):
    tf, tf1, keras = _keras_start()
    from deepctr.feature_column import DenseFeat, SparseFeat, get_feature_names
    sparse, dense = ["C1", "C2", "C3"], ["I1", "I2"]
    columns = [SparseFeat(f, vocabulary_size=10, embedding_dim=4) for f in sparse] + [DenseFeat(f, 1) for f in dense]
    model = build(columns)
    model.compile("adam", "binary_crossentropy" if task == "binary" else "mse",
                  metrics=["binary_crossentropy" if task == "binary" else "mse"])
    rng = np.random.default_rng(9)
    names = get_feature_names(columns)
    x, infer = _ctr_data(rng, 8, sparse, dense), _ctr_data(rng, 3, sparse, dense)
    y = rng.integers(0, 2, 8).astype(np.float32)
    _keras_train_save_record(tf, tf1, name, out_dir, model, {n: x[n] for n in names}, y,
                             {n: infer[n] for n in names}, batch_size=4)


def deepctr_deepfm(out_dir):
    from_models = lambda cols: __import__("deepctr.models", fromlist=["DeepFM"]).DeepFM(  # noqa: E731
        cols, cols, task="binary", dnn_hidden_units=(16, 8), seed=1)
    _deepctr(out_dir, "deepctr_deepfm", from_models)


def deepctr_xdeepfm(out_dir):
    _deepctr(out_dir, "deepctr_xdeepfm", lambda cols: __import__("deepctr.models", fromlist=["xDeepFM"]).xDeepFM(
        cols, cols, dnn_hidden_units=(16, 8), cin_layer_size=(8, 8), task="binary", seed=1))


def deepctr_autoint(out_dir):
    _deepctr(out_dir, "deepctr_autoint", lambda cols: __import__("deepctr.models", fromlist=["AutoInt"]).AutoInt(
        cols, cols, att_layer_num=2, att_embedding_size=4, att_head_num=2, dnn_hidden_units=(16, 8), seed=1))


def deepctr_dcn(out_dir):
    _deepctr(out_dir, "deepctr_dcn", lambda cols: __import__("deepctr.models", fromlist=["DCN"]).DCN(
        cols, cols, cross_num=2, dnn_hidden_units=(16, 8), task="regression", seed=1), task="regression")


def deepctr_din(out_dir):
    """deepctr's examples/run_din.py, at its own sizes."""
    tf, tf1, keras = _keras_start()
    from deepctr.feature_column import DenseFeat, SparseFeat, VarLenSparseFeat, get_feature_names
    from deepctr.models import DIN
    columns = [SparseFeat("user", 3, embedding_dim=10), SparseFeat("gender", 2, embedding_dim=4),
               SparseFeat("item_id", 3 + 1, embedding_dim=8), SparseFeat("cate_id", 2 + 1, embedding_dim=4),
               DenseFeat("pay_score", 1)]
    columns += [VarLenSparseFeat(SparseFeat("hist_item_id", vocabulary_size=3 + 1, embedding_dim=8,
                                            embedding_name="item_id"), maxlen=4, length_name="seq_length"),
                VarLenSparseFeat(SparseFeat("hist_cate_id", 2 + 1, embedding_dim=4, embedding_name="cate_id"),
                                 maxlen=4, length_name="seq_length")]
    model = DIN(columns, ["item_id", "cate_id"], dnn_hidden_units=(16, 8), att_hidden_size=(16, 8), seed=1)
    model.compile("adam", "binary_crossentropy", metrics=["binary_crossentropy"])
    data = {"user": [0, 1, 2], "gender": [0, 1, 0], "item_id": [1, 2, 3], "cate_id": [1, 2, 2],
            "pay_score": [0.1, 0.2, 0.3], "hist_item_id": [[1, 2, 3, 0], [3, 2, 1, 0], [1, 2, 0, 0]],
            "hist_cate_id": [[1, 2, 2, 0], [2, 2, 1, 0], [1, 2, 0, 0]], "seq_length": [3, 3, 2]}
    x = {n: np.array(data[n], np.float32 if n == "pay_score" else np.int32).reshape(3, -1)
         for n in get_feature_names(columns)}
    infer = {n: v[::-1].copy() for n, v in x.items()}
    _keras_train_save_record(tf, tf1, "deepctr_din", out_dir, model, x, np.array([1, 0, 1], np.float32), infer,
                             epochs=2, batch_size=3)


# --- image models: efficientnet, segmentation-models, tf-slim --------------------------

def _images(rng, n, size, channels=3):
    return rng.standard_normal((n, size, size, channels)).astype(np.float32)


def efficientnet_tiny(out_dir):
    tf, tf1, keras = _keras_start()
    import efficientnet
    import efficientnet.model as em
    build = efficientnet.inject_tfkeras_modules(em.EfficientNet)
    model = build(0.25, 0.25, 32, dropout_rate=0.2, model_name="efficientnet-tiny", weights=None,
                  input_shape=(32, 32, 3), classes=5)
    model.compile(keras.optimizers.legacy.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(5)
    _keras_train_save_record(tf, tf1, "efficientnet_tiny", out_dir, model, _images(rng, 4, 32),
                             np.eye(5, dtype=np.float32)[rng.integers(0, 5, 4)], _images(rng, 2, 32))


def image_classifiers_resnet18(out_dir):
    tf, tf1, keras = _keras_start()
    from classification_models.tfkeras import Classifiers
    ResNet18, _ = Classifiers.get("resnet18")
    model = ResNet18(input_shape=(32, 32, 3), weights=None, classes=5)
    model.compile(keras.optimizers.legacy.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(18)
    _keras_train_save_record(tf, tf1, "image_classifiers_resnet18", out_dir, model, _images(rng, 4, 32),
                             rng.integers(0, 5, 4), _images(rng, 2, 32))


def _sm(out_dir, name, build, loss, classes):
    tf, tf1, keras = _keras_start()
    import segmentation_models as sm
    model = build(sm)
    model.compile(keras.optimizers.legacy.Adam(1e-3), loss=loss(sm), metrics=[sm.metrics.iou_score])
    rng = np.random.default_rng(6)
    labels = rng.integers(0, max(classes, 2), (4, 64, 64))
    y = (np.eye(classes, dtype=np.float32)[labels] if classes > 1 else labels[..., None].astype(np.float32))
    _keras_train_save_record(tf, tf1, name, out_dir, model, _images(rng, 4, 64), y, _images(rng, 2, 64))


def sm_unet_resnet18(out_dir):
    _sm(out_dir, "sm_unet_resnet18", lambda sm: sm.Unet("resnet18", encoder_weights=None, input_shape=(64, 64, 3),
                                                         classes=3, activation="softmax",
                                                         decoder_filters=(32, 16, 16, 8, 8)),
        lambda sm: sm.losses.DiceLoss() + sm.losses.CategoricalFocalLoss(), 3)


def sm_linknet_mobilenetv2(out_dir):
    _sm(out_dir, "sm_linknet_mobilenetv2", lambda sm: sm.Linknet("mobilenetv2", encoder_weights=None,
                                                                 input_shape=(64, 64, 3), classes=1,
                                                                 activation="sigmoid"),
        lambda sm: sm.losses.bce_jaccard_loss, 1)


def sm_fpn_efficientnet(out_dir):
    _sm(out_dir, "sm_fpn_efficientnet", lambda sm: sm.FPN("efficientnetb0", encoder_weights=None,
                                                          input_shape=(64, 64, 3), classes=3, activation="softmax",
                                                          pyramid_block_filters=32),
        lambda sm: sm.losses.categorical_focal_jaccard_loss, 3)


def slim_inception_v2(out_dir):
    tf, tf1 = _tf2()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import corpus  # tf-slim's import shim for tf-keras' legacy layers
    slim = corpus._slim()
    from tf_slim.nets import inception_v2
    _seed(tf)
    rng = np.random.default_rng(7)
    graph = tf.Graph()
    with graph.as_default():
        images = tf1.placeholder(tf.float32, [None, 96, 96, 3], name="images")
        labels = tf1.placeholder(tf.int64, [None], name="labels")
        is_training = tf1.placeholder_with_default(False, [], name="is_training")
        with slim.arg_scope(inception_v2.inception_v2_arg_scope()):
            logits, end_points = inception_v2.inception_v2(images, num_classes=5, is_training=is_training,
                                                           depth_multiplier=0.25, min_depth=8)
        tf1.losses.softmax_cross_entropy(tf.one_hot(labels, 5), logits)  # as train_image_classifier.py
        total = tf1.losses.get_total_loss()
        train_op = slim.learning.create_train_op(total, tf1.train.RMSPropOptimizer(1e-3),
                                                 global_step=tf1.train.get_or_create_global_step())
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(2):
                sess.run(train_op, {images: _images(rng, 4, 96), labels: rng.integers(0, 5, 4), is_training: True})
            prefix = tf1.train.Saver().save(sess, os.path.join(out_dir, "model.ckpt"), global_step=2)
    _record(tf1, graph, prefix, out_dir, "slim_inception_v2", [end_points["Predictions"].name],
            {images.name: _images(rng, 2, 96)})


# --- graphs: spektral ------------------------------------------------------------------

def spektral_gcn(out_dir):
    tf, tf1, keras = _keras_start()
    from spektral.models import GCN
    from spektral.utils import gcn_filter
    rng = np.random.default_rng(8)
    n, f, labels = 8, 4, 3

    def graphs(b):
        a = (rng.random((b, n, n)) < 0.3).astype(np.float32)
        a = np.maximum(a, a.transpose(0, 2, 1))
        return [rng.standard_normal((b, n, f)).astype(np.float32), gcn_filter(a).astype(np.float32)]
    x_in, a_in = keras.Input((n, f), name="x"), keras.Input((n, n), name="a")
    model = keras.Model([x_in, a_in], GCN(n_labels=labels, channels=8)([x_in, a_in]))
    model.compile(keras.optimizers.legacy.Adam(1e-2), loss=keras.losses.CategoricalCrossentropy(reduction="sum"),
                  weighted_metrics=["acc"])  # examples/node_prediction/citation_gcn.py
    y = np.eye(labels, dtype=np.float32)[rng.integers(0, labels, (4, n))]
    _keras_train_save_record(tf, tf1, "spektral_gcn", out_dir, model, graphs(4), y, graphs(2))


# --- keras-tcn, tensorflow-recommenders -------------------------------------------

def keras_tcn(out_dir):
    tf, tf1, keras = _keras_start()
    import tcn
    # compiled_tcn compiles with tf.keras.optimizers.Adam, which graph mode converts to the
    # legacy Adam by reading its hyperparameters eagerly (fails): give it the legacy module
    tcn.tcn.optimizers = keras.optimizers.legacy
    model = tcn.compiled_tcn(num_feat=2, num_classes=3, nb_filters=8, kernel_size=3, dilations=[1, 2, 4],
                             nb_stacks=1, max_len=16, use_skip_connections=True, return_sequences=False)
    rng = np.random.default_rng(16)
    _keras_train_save_record(tf, tf1, "keras_tcn", out_dir, model,
                             rng.standard_normal((6, 16, 2)).astype(np.float32), rng.integers(0, 3, (6, 1)),
                             rng.standard_normal((2, 16, 2)).astype(np.float32))


def tfrs_dcn_ranking(out_dir):
    tf, tf1, keras = _keras_start()
    import tensorflow_recommenders as tfrs
    user = keras.Input((1,), dtype="int32", name="user_id")
    item = keras.Input((1,), dtype="int32", name="movie_id")
    x0 = keras.layers.Concatenate()([keras.layers.Flatten()(keras.layers.Embedding(10, 8)(user)),
                                     keras.layers.Flatten()(keras.layers.Embedding(20, 8)(item))])
    crossed = tfrs.layers.dcn.Cross(projection_dim=4, kernel_initializer="glorot_uniform")(x0)
    rating = keras.layers.Dense(1, name="rating")(keras.layers.Dense(16, activation="relu")(crossed))
    model = keras.Model([user, item], rating)
    task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError())
    model.compile(keras.optimizers.legacy.Adagrad(0.1), loss=lambda y, p: task(labels=y, predictions=p))
    rng = np.random.default_rng(17)
    x = [rng.integers(0, 10, (8, 1)).astype(np.int32), rng.integers(0, 20, (8, 1)).astype(np.int32)]
    infer = [rng.integers(0, 10, (3, 1)).astype(np.int32), rng.integers(0, 20, (3, 1)).astype(np.int32)]
    _keras_train_save_record(tf, tf1, "tfrs_dcn_ranking", out_dir, model, x,
                             rng.integers(1, 6, (8, 1)).astype(np.float32), infer, batch_size=4)


# --- TF 1.15: bert-tensorflow, tflearn -----------------------------------------------

def bert_classifier(out_dir):
    """BERT's run_classifier.create_model trained with bert.optimization.create_optimizer
    (is_training=True: dropout), then the PREDICT graph (is_training=False) restored from
    that checkpoint and saved, as run_classifier's Estimator predicts and users export."""
    tf, tf1 = _tf1()
    from bert import modeling, optimization, run_classifier
    config = modeling.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=32, type_vocab_size=2)
    rng = np.random.default_rng(20)
    seq = 12

    def graph_for(is_training, n):
        # a static batch size, as BERT's TPU-era input_fns give: with a dynamic one, TF 1.15 under
        # numpy >= 1.20 fails in modeling.create_attention_mask_from_input_mask (tf.ones of a tensor shape)
        g = tf.Graph()
        with g.as_default():
            tf1.set_random_seed(20)
            ids = tf1.placeholder(tf.int32, [n, seq], name="input_ids")
            mask = tf1.placeholder(tf.int32, [n, seq], name="input_mask")
            segs = tf1.placeholder(tf.int32, [n, seq], name="segment_ids")
            labels = tf1.placeholder(tf.int32, [n], name="label_ids")
            loss, _, logits, probs = run_classifier.create_model(config, is_training, ids, mask, segs, labels, 3,
                                                                 False)
        return g, (ids, mask, segs, labels), loss, logits, probs

    def batch(n):
        mask = (np.arange(seq)[None, :] < rng.integers(5, seq + 1, n)[:, None]).astype(np.int32)
        return [rng.integers(1, 40, (n, seq)).astype(np.int32) * mask, mask,
                (np.arange(seq)[None, :] >= seq // 2).astype(np.int32).repeat(n, 0)]
    g, (ids, mask, segs, labels), loss, _, _ = graph_for(True, 4)
    train_dir = os.path.join(out_dir, "train")
    os.makedirs(train_dir)
    with g.as_default():
        train_op = optimization.create_optimizer(loss, 1e-3, 10, 2, False)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(2):
                b = batch(4)
                sess.run(train_op, {ids: b[0], mask: b[1], segs: b[2], labels: rng.integers(0, 3, 4)})
            train_prefix = tf1.train.Saver().save(sess, os.path.join(train_dir, "model.ckpt"), global_step=2)
    g, (ids, mask, segs, _), _, logits, probs = graph_for(False, 2)
    with g.as_default(), tf1.Session() as sess:
        tvars = tf1.trainable_variables()
        assignment, _ = modeling.get_assignment_map_from_checkpoint(tvars, train_prefix)  # run_classifier's init
        tf1.train.init_from_checkpoint(train_prefix, assignment)
        sess.run(tf1.global_variables_initializer())
        prefix = tf1.train.Saver().save(sess, os.path.join(out_dir, "model.ckpt"), global_step=2)
    import shutil
    shutil.rmtree(train_dir)
    b = batch(2)
    _record(tf1, g, prefix, out_dir, "bert_classifier", [probs.name],
            {ids.name: b[0], mask.name: b[1], segs.name: b[2]})


def _tflearn(out_dir, name, build, x, y, x_infer):
    tf, tf1 = _tf1()
    import tflearn
    tf1.reset_default_graph()
    tflearn.init_graph(seed=21)
    _seed(tf, 21)
    net, inp = build(tflearn)
    head = tflearn.regression(net, optimizer="adam", learning_rate=0.01, loss="categorical_crossentropy",
                              name="target")
    model = tflearn.DNN(head, tensorboard_verbose=0, tensorboard_dir=os.path.join(out_dir, "tb"))
    model.fit({"input": x}, {"target": y}, n_epoch=1, batch_size=4, show_metric=False)
    model.save(os.path.join(out_dir, "model.tfl"))
    predicted = np.asarray(model.predict(x_infer))
    graph = tf1.get_default_graph()
    training_mode = tflearn.get_training_mode()  # tflearn's switch: a variable, False at predict
    _record(tf1, graph, os.path.join(out_dir, "model.tfl"), out_dir, name, [net.name], {inp.name: x_infer},
            expected=[predicted], session_feed={training_mode: False},
            note="tflearn's training mode is the boolean variable %s (fit sets it True, predict False)"
                 % training_mode.name)


def tflearn_convnet(out_dir):
    rng = np.random.default_rng(22)

    def build(tflearn):
        inp = tflearn.input_data(shape=[None, 8, 8, 1], name="input")
        net = tflearn.conv_2d(inp, 8, 3, activation="relu", regularizer="L2")
        net = tflearn.max_pool_2d(net, 2)
        net = tflearn.local_response_normalization(net)
        net = tflearn.fully_connected(net, 16, activation="tanh")
        net = tflearn.dropout(net, 0.8)
        return tflearn.fully_connected(net, 3, activation="softmax"), inp
    _tflearn(out_dir, "tflearn_convnet", build, rng.standard_normal((8, 8, 8, 1)).astype(np.float32),
             np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)], rng.standard_normal((2, 8, 8, 1)).astype(np.float32))


def tflearn_lstm(out_dir):
    rng = np.random.default_rng(23)

    def build(tflearn):
        inp = tflearn.input_data([None, 10], name="input")
        net = tflearn.embedding(inp, input_dim=30, output_dim=8)
        net = tflearn.lstm(net, 16, dropout=0.8)
        return tflearn.fully_connected(net, 2, activation="softmax"), inp
    _tflearn(out_dir, "tflearn_lstm", build, rng.integers(0, 30, (8, 10)).astype(np.float32),
             np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)], rng.integers(0, 30, (2, 10)).astype(np.float32))


# --- grading (in tffreeze's .venv: the bench and the test) ---------------------------

CRASH_REASONS = ("ERROR_REASON_GRAPH_UNSUPPORTED",)


def _matches(graph_bytes, info, feeds=None, tol=1e-5):
    """(True, why) if the frozen graph runs on the recorded feeds and equals the checkpoint
    session's outputs within 1e-5, as tests/integration/test_real_models.py compares:
    |got - want| <= 1e-6 + 1e-5 * (|want| + max |want|) (oneDNN, and TF 1.15 against 2.21
    for the TF1 models, split sums differently: the absolute part scales with the output)."""
    import models
    try:
        got = models.run_frozen(graph_bytes, feeds or info["feeds"], info["outputs"])
    except Exception as exc:  # noqa: BLE001 - a graph that does not run is the finding
        return False, "frozen graph fails: %s" % " ".join(str(exc).split())[:200]
    worst = 0.0
    for name, value in zip(info["outputs"], got):
        want = np.asarray(info["expected"][name], np.float64)
        diff = np.abs(np.asarray(value, np.float64) - want)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        if np.asarray(value).shape != want.shape or not np.all(diff <= tol * 0.1 + tol * (np.abs(want) + scale)):
            return False, "wrong values for %s (max abs diff %.3g)" % (name, float(diff.max()))
    return True, "max abs diff %.2g" % worst


def _crash(exc):
    return exc.code in ("INTERNAL", "UNKNOWN") or exc.reason in CRASH_REASONS


def grade_without_names(client, info, out_path):
    """A freeze without names: ("right" | "helpful refusal" | "unhelpful refusal" |
    "wrong" | "crash", detail). Right: exactly the model's outputs and data inputs, equal
    to the checkpoint's values; a helpful refusal lists every right output among its
    candidates; wrong: exit 0 with other names, or a graph that does not run or differs."""
    from tffreeze import TffreezeError
    try:
        outcome = client.freeze(info["dir"], out_path)
    except TffreezeError as exc:
        detail = "%s %s: %s" % (exc.code, exc.reason, " ".join(exc.message.split())[:300])
        if _crash(exc):
            return "crash", detail
        listed = exc.metadata.get("candidates", "").split(",")
        if exc.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS" and set(info["outputs"]) <= set(listed):
            return "helpful refusal", detail
        return "unhelpful refusal", detail + " (candidates %s)" % exc.metadata.get("candidates", "")[:300]
    m = outcome.manifest
    outs, ins = sorted(o["name"] for o in m["outputs"]), sorted(i["name"] for i in m["inputs"])
    if outs != sorted(info["outputs"]) or ins != sorted(info["inputs"]):
        return "wrong", "outputs %s inputs %s (want %s, %s)" % (outs, ins, sorted(info["outputs"]),
                                                                 sorted(info["inputs"]))
    with open(outcome.path, "rb") as fh:
        ok, why = _matches(fh.read(), info)
    return ("right" if ok else "wrong"), why


def grade_with_names(client, info, out_path):
    """A freeze given the outputs: ("match" | "differs" | "refused" | "crash", detail)."""
    from tffreeze import TffreezeError
    try:
        outcome = client.freeze(info["dir"], out_path, outputs=info["outputs"])
    except TffreezeError as exc:
        detail = "%s %s: %s" % (exc.code, exc.reason, " ".join(exc.message.split())[:300])
        return ("crash" if _crash(exc) else "refused"), detail
    with open(outcome.path, "rb") as fh:
        ok, why = _matches(fh.read(), info)
    return ("match" if ok else "differs"), why


def grade_freeze_graph(info, out_pb, python=sys.executable):
    """TensorFlow's freeze_graph given the output node names (and, as bench/real_models.py
    does, fed the inference value of scalar switches it leaves as placeholders):
    ("match" | "differs" | "fails", detail, seconds)."""
    import subprocess
    import time
    prefix = os.path.join(info["dir"], info["prefix"])
    nodes = sorted({n.split(":")[0] for n in info["outputs"]})
    cmd = [python, "-m", "tensorflow.python.tools.freeze_graph", "--input_meta_graph", prefix + ".meta",
           "--input_binary=true", "--input_checkpoint", prefix, "--output_node_names", ",".join(nodes),
           "--output_graph", out_pb]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1"))
    took = time.perf_counter() - t
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "rror" in ln] or proc.stderr.splitlines()[-1:]
        return "fails", "exit %d: %s" % (proc.returncode, (lines[-1] if lines else "")[:200]), took
    with open(out_pb, "rb") as fh:
        data = fh.read()
    from tensorflow.core.framework import graph_pb2
    feeds = dict(info["feeds"])
    for n in graph_pb2.GraphDef.FromString(data).node:
        scalar = "shape" in n.attr and not n.attr["shape"].shape.unknown_rank and not n.attr["shape"].shape.dim
        if n.op == "Placeholder" and n.name + ":0" not in feeds and scalar:
            feeds[n.name + ":0"] = False if n.attr["dtype"].type == 10 else 1.0
    ok, why = _matches(data, info, feeds)
    return ("match" if ok else "differs"), why, took


# --- building and loading -------------------------------------------------------------

def available_envs():
    """The environments present: tf2 needs `make libcorpus-env`, tf1 also `make tf115`."""
    out = set()
    for env, (python, path, _) in ENVS.items():
        if os.path.exists(python) and (path is None or os.path.exists(os.path.join(path, ".libcorpus-setup"))):
            out.add(env)
    return out


def build_all(root: str = None, names=None, workers: int = 2) -> dict:
    """Build every model of ``names`` not yet under ``root`` (one process each, in its
    environment; a model's folder appears only once complete) and load them all.
    A failed build is returned as {"error": ...} for that model, not raised."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    root = root or default_root()
    names = list(names or MODELS)

    def build(name):
        out = os.path.join(root, name)
        if os.path.exists(os.path.join(out, "corpus.json")):
            return None
        python, path, _ = ENVS[MODELS[name][0]]
        tmp = out + ".building"
        subprocess.run(["rm", "-rf", tmp, out], check=True)
        env = dict(os.environ)
        # importing TensorFlow 2 sets TF2_BEHAVIOR=1 in its process's environment; inherited, it
        # would turn TF 1.15 into TF 2 behaviour (BERT's shape[-1].value fails)
        env.pop("TF2_BEHAVIOR", None)
        if path:
            env["PYTHONPATH"] = path
        proc = subprocess.run([python, os.path.abspath(__file__), name, tmp], capture_output=True, text=True,
                              timeout=900, env=env)
        if proc.returncode != 0:
            with open(out + ".error", "w") as fh:
                fh.write(proc.stderr)
            return proc.stderr[-2000:]
        os.rename(tmp, out)
        if os.path.exists(out + ".error"):
            os.remove(out + ".error")
        return None

    os.makedirs(root, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:
        errors = dict(zip(names, pool.map(build, names)))
    return {name: ({"error": errors[name]} if errors[name] else load(os.path.join(root, name))) for name in names}


def load(out_dir: str) -> dict:
    """A built model's folder, read as the hand-written corpus's are (the same layout)."""
    import corpus

    return corpus.load(out_dir)


if __name__ == "__main__":
    model_name, out = sys.argv[1], sys.argv[2]
    if model_name not in MODELS:
        sys.exit("unknown model %r; one of %s" % (model_name, ", ".join(MODELS)))
    os.makedirs(out, exist_ok=True)
    globals()[model_name](out)
