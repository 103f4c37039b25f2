"""The corpus' second half: kinds of model that are not "inputs -> classifier head ->
loss(labels)", written the way their users write them in TF1 graph mode.

Metric learning (a siamese pair under a contrastive loss, a triplet network, a batch-hard
triplet loss over one tower), generative models (a VAE, a GAN with and without a sampler
tower), a text model with a vocabulary table, a tf.data-fed model, two heads on one trunk,
outputs after the head (detection post-processing, CTC decoding), data-parallel replicas,
distillation from a fixed teacher, a fixed feature network scoring the trained one's
output, and two more Keras application families (RegNet, EfficientNet). What each records
as its outputs is what its user deploys; see ``corpus.py`` for how the corpus is built
and read.
"""

from __future__ import annotations

import os

import numpy as np

from corpus import _images, _keras_app, _record, _tf, _train_and_save

def _save_trained(tf1, graph, train_op, feed, out_dir, steps=2):
    with graph.as_default():
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            return _train_and_save(tf1, sess, saver, train_op, feed, out_dir, steps=steps)


def _dense_tower(tf1, x, units, scope, reuse=None, trainable=True):
    with tf1.variable_scope(scope, reuse=reuse):
        h = x
        for k, u in enumerate(units[:-1]):
            h = tf1.layers.dense(h, u, activation="relu", name="fc%d" % k, trainable=trainable)
        return tf1.layers.dense(h, units[-1], name="out", trainable=trainable)


def siamese_contrastive(out_dir):
    """A siamese pair sharing weights, l2-normalised embeddings, a contrastive loss whose
    float label (same / different) weights the loss terms."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(21)
    graph = tf.Graph()
    with graph.as_default():
        left = tf1.placeholder(tf.float32, [None, 20], name="left")
        right = tf1.placeholder(tf.float32, [None, 20], name="right")
        same = tf1.placeholder(tf.float32, [None], name="same")
        emb_l = tf.nn.l2_normalize(_dense_tower(tf1, left, [32, 16], "embed"), axis=1, name="embedding_left")
        emb_r = tf.nn.l2_normalize(_dense_tower(tf1, right, [32, 16], "embed", reuse=True), axis=1,
                                   name="embedding_right")
        d2 = tf.reduce_sum(tf.square(emb_l - emb_r), axis=1)
        d = tf.sqrt(d2 + 1e-9)
        loss = tf.reduce_mean(same * d2 + (1.0 - same) * tf.square(tf.maximum(0.5 - d, 0.0)))
        tf1.summary.scalar("loss", loss)
        train_op = tf1.train.AdamOptimizer(1e-3).minimize(loss, global_step=tf1.train.get_or_create_global_step())
    feed = {left: rng.standard_normal((8, 20)), right: rng.standard_normal((8, 20)),
            same: rng.integers(0, 2, 8).astype(np.float32)}
    prefix = _save_trained(tf1, graph, train_op, feed, out_dir)
    feeds = {left.name: rng.standard_normal((3, 20)).astype(np.float32),
             right.name: rng.standard_normal((3, 20)).astype(np.float32)}
    _record(tf1, graph, prefix, out_dir, [emb_l.name, emb_r.name], None, feeds)


def triplet_embedding(out_dir):
    """A triplet network (anchor, positive, negative share one conv tower) under a
    margin loss with no label at all."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(22)
    graph = tf.Graph()

    def tower(x, reuse):
        with tf1.variable_scope("net", reuse=reuse):
            h = tf1.layers.conv2d(x, 8, 3, strides=2, activation="relu", name="conv")
            h = tf1.layers.flatten(h)
            return tf.nn.l2_normalize(tf1.layers.dense(h, 8, name="embedding"), axis=1)

    with graph.as_default():
        anchor, positive, negative = (tf1.placeholder(tf.float32, [None, 8, 8, 1], name=n)
                                      for n in ("anchor", "positive", "negative"))
        ea, ep, en = tower(anchor, None), tower(positive, True), tower(negative, True)
        loss = tf.reduce_mean(tf.maximum(tf.reduce_sum(tf.square(ea - ep), 1) - tf.reduce_sum(tf.square(ea - en), 1)
                                         + 0.2, 0.0))
        train_op = tf1.train.GradientDescentOptimizer(0.05).minimize(loss)
    feed = {t: rng.standard_normal((4, 8, 8, 1)) for t in (anchor, positive, negative)}
    prefix = _save_trained(tf1, graph, train_op, feed, out_dir)
    feeds = {t.name: rng.standard_normal((2, 8, 8, 1)).astype(np.float32) for t in (anchor, positive, negative)}
    _record(tf1, graph, prefix, out_dir, [ea.name, ep.name, en.name], None, feeds)


def vae(out_dir):
    """A variational autoencoder: the reconstruction loss compares the decoder's output
    with the model's own input; a KL term reads the latent mean and log-variance; the
    latent is sampled (seeded, so the original and the frozen graph draw the same)."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(23)
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(3)
        x = tf1.placeholder(tf.float32, [None, 64], name="x")
        with tf1.variable_scope("encoder"):
            h = tf1.layers.dense(x, 32, activation="relu")
            mu = tf1.layers.dense(h, 8, name="mu")
            logvar = tf1.layers.dense(h, 8, name="logvar")
        z = mu + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mu), seed=5)
        with tf1.variable_scope("decoder"):
            h = tf1.layers.dense(z, 32, activation="relu")
            x_hat = tf1.layers.dense(h, 64, activation="sigmoid", name="reconstruction")
        recon = -tf.reduce_sum(x * tf.math.log(x_hat + 1e-7) + (1 - x) * tf.math.log(1 - x_hat + 1e-7), axis=1)
        kl = -0.5 * tf.reduce_sum(1 + logvar - tf.square(mu) - tf.exp(logvar), axis=1)
        loss = tf.reduce_mean(recon + kl)
        tf1.summary.scalar("elbo", -loss)
        train_op = tf1.train.AdamOptimizer(1e-3).minimize(loss)
    feed = {x: rng.uniform(size=(8, 64))}
    prefix = _save_trained(tf1, graph, train_op, feed, out_dir)
    _record(tf1, graph, prefix, out_dir, [x_hat.name, mu.name, logvar.name], None,
            {x.name: rng.uniform(size=(2, 64)).astype(np.float32)})


def _gan(out_dir, sampler: bool):
    tf, tf1 = _tf()
    rng = np.random.default_rng(24)
    graph = tf.Graph()

    def generator(z, training, reuse):
        with tf1.variable_scope("generator", reuse=reuse):
            h = tf1.layers.dense(z, 4 * 4 * 8, name="project")
            h = tf.reshape(h, [-1, 4, 4, 8])
            if sampler:
                h = tf1.layers.batch_normalization(h, training=training, name="bn")
            h = tf.nn.relu(h)
            return tf.tanh(tf1.layers.conv2d_transpose(h, 1, 3, strides=2, padding="same", name="deconv"))

    def discriminator(img, reuse):
        with tf1.variable_scope("discriminator", reuse=reuse):
            h = tf.nn.leaky_relu(tf1.layers.conv2d(img, 8, 3, strides=2, padding="same", name="conv"))
            return tf1.layers.dense(tf1.layers.flatten(h), 1, name="logit")

    with graph.as_default():
        z = tf1.placeholder(tf.float32, [None, 16], name="z")
        real = tf1.placeholder(tf.float32, [None, 8, 8, 1], name="real")
        fake = generator(z, True, None)
        d_real, d_fake = discriminator(real, None), discriminator(fake, True)
        xent = tf.nn.sigmoid_cross_entropy_with_logits
        d_loss = tf.reduce_mean(xent(labels=tf.ones_like(d_real), logits=d_real)) + \
            tf.reduce_mean(xent(labels=tf.zeros_like(d_fake), logits=d_fake))
        g_loss = tf.reduce_mean(xent(labels=tf.ones_like(d_fake), logits=d_fake))
        g_vars = tf1.trainable_variables("generator")
        d_vars = tf1.trainable_variables("discriminator")
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            g_step = tf1.train.AdamOptimizer(1e-3, name="g_adam").minimize(g_loss, var_list=g_vars)
        d_step = tf1.train.AdamOptimizer(1e-3, name="d_adam").minimize(d_loss, var_list=d_vars)
        train_op = tf.group(g_step, d_step)
        out = generator(z, False, True) if sampler else fake
        tf1.summary.image("samples", out, max_outputs=2)
    feed = {z: rng.standard_normal((4, 16)), real: rng.uniform(-1, 1, (4, 8, 8, 1))}
    prefix = _save_trained(tf1, graph, train_op, feed, out_dir)
    _record(tf1, graph, prefix, out_dir, [out.name], None, {z.name: rng.standard_normal((3, 16)).astype(np.float32)})


def gan_with_sampler(out_dir):
    """A DCGAN-style pair trained by two optimizers, with a sampler tower (the generator
    again, reuse=True, batch norm in inference mode) that the user deploys."""
    _gan(out_dir, sampler=True)


def gan_plain(out_dir):
    """The same without a sampler tower: the deployed output is the generator's."""
    _gan(out_dir, sampler=False)


def text_vocab_table(out_dir):
    """Tokens to ids through a vocabulary table (tf.lookup.StaticHashTable from constants,
    initialised by tables_initializer), embeddings, a 1-d convolution, max over time."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(25)
    vocab = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "fast", "slow"]
    graph = tf.Graph()
    with graph.as_default():
        tokens = tf1.placeholder(tf.string, [None, 6], name="tokens")
        labels = tf1.placeholder(tf.int64, [None], name="labels")
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab), tf.constant(np.arange(1, len(vocab) + 1, dtype=np.int64))), default_value=0)
        ids = table.lookup(tokens)
        emb = tf.nn.embedding_lookup(tf1.get_variable("embedding", [len(vocab) + 1, 8]), ids)
        h = tf.reduce_max(tf1.layers.conv1d(emb, 12, 3, activation="relu", name="conv"), axis=1)
        logits = tf1.layers.dense(h, 3, name="logits")
        probs = tf.nn.softmax(logits, name="probabilities")
        loss = tf1.losses.sparse_softmax_cross_entropy(labels, logits)
        train_op = tf1.train.AdamOptimizer(1e-2).minimize(loss)
        saver = tf1.train.Saver()
        words = np.array(vocab + ["unknown"]).astype("S")  # bytes: np.load reads them without pickle
        feed = {tokens: words[rng.integers(0, len(words), (6, 6))], labels: rng.integers(0, 3, 6)}
        with tf1.Session() as sess:
            sess.run(tf1.tables_initializer())
            prefix = _train_and_save(tf1, sess, saver, train_op, feed, out_dir)
    _record(tf1, graph, prefix, out_dir, [probs.name], None,
            {tokens.name: words[rng.integers(0, len(words), (3, 6))]}, tables=True)


def dataset_fed(out_dir):
    """Trained from tf.data: an initializable iterator over in-memory arrays; data enters
    the model at IteratorGetNext (features, labels)."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(26)
    graph = tf.Graph()
    with graph.as_default():
        features = tf1.placeholder(tf.float32, [None, 10], name="features_source")
        targets = tf1.placeholder(tf.int64, [None], name="labels_source")
        dataset = tf.data.Dataset.from_tensor_slices((features, targets)).shuffle(16).repeat().batch(4)
        iterator = tf1.data.make_initializable_iterator(dataset)
        x, y = iterator.get_next()
        logits = _dense_tower(tf1, x, [16, 3], "mlp")
        probs = tf.nn.softmax(logits, name="probabilities")
        loss = tf1.losses.sparse_softmax_cross_entropy(y, logits)
        train_op = tf1.train.AdamOptimizer(1e-2).minimize(loss)
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            sess.run(iterator.initializer, {features: rng.standard_normal((16, 10)), targets: rng.integers(0, 3, 16)})
            prefix = _train_and_save(tf1, sess, saver, train_op, {}, out_dir)
    # The frozen graph's input is the iterator's first output, cut into a placeholder.
    _record(tf1, graph, prefix, out_dir, [probs.name], None,
            {"IteratorGetNext:0": rng.standard_normal((3, 10)).astype(np.float32)},
            session_names={"IteratorGetNext:0": x.name})


def two_heads(out_dir):
    """One conv trunk, two heads trained together: a species classifier and an age
    regression, each with its own labels."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(27)
    graph = tf.Graph()
    with graph.as_default():
        images = tf1.placeholder(tf.float32, [None, 16, 16, 3], name="images")
        species = tf1.placeholder(tf.int64, [None], name="species")
        age = tf1.placeholder(tf.float32, [None], name="age")
        h = tf1.layers.conv2d(images, 8, 3, strides=2, activation="relu", name="trunk/conv")
        h = tf.reduce_mean(h, axis=[1, 2])
        species_logits = tf1.layers.dense(h, 4, name="species_head")
        species_probs = tf.nn.softmax(species_logits, name="species_probabilities")
        age_pred = tf.squeeze(tf1.layers.dense(h, 1, name="age_head"), axis=1, name="age_prediction")
        loss = tf1.losses.sparse_softmax_cross_entropy(species, species_logits) + \
            tf1.losses.mean_squared_error(age, age_pred)
        train_op = tf1.train.MomentumOptimizer(0.01, 0.9).minimize(loss)
    feed = {images: _images(rng, 4, 16), species: rng.integers(0, 4, 4), age: rng.uniform(0, 80, 4)}
    prefix = _save_trained(tf1, graph, train_op, feed, out_dir)
    _record(tf1, graph, prefix, out_dir, [species_probs.name, age_pred.name], None,
            {images.name: _images(rng, 2, 16)})


def detector_nms(out_dir):
    """A one-stage detector: per-anchor class logits and box deltas trained against
    matched targets; deployed after post-processing (decode the boxes against the
    anchors, sigmoid scores, combined non-max suppression)."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(28)
    classes = 3
    grid = 4
    anchors_np = np.array([[y / grid, x / grid, (y + 1) / grid, (x + 1) / grid]
                           for y in range(grid) for x in range(grid)], np.float32)
    graph = tf.Graph()
    with graph.as_default():
        images = tf1.placeholder(tf.float32, [None, 16, 16, 3], name="images")
        cls_targets = tf1.placeholder(tf.float32, [None, grid * grid, classes], name="cls_targets")
        box_targets = tf1.placeholder(tf.float32, [None, grid * grid, 4], name="box_targets")
        h = tf1.layers.conv2d(images, 16, 3, strides=2, padding="same", activation="relu", name="backbone/conv1")
        h = tf1.layers.conv2d(h, 16, 3, strides=2, padding="same", activation="relu", name="backbone/conv2")
        cls_logits = tf.reshape(tf1.layers.conv2d(h, classes, 1, name="head/cls"), [-1, grid * grid, classes])
        deltas = tf.reshape(tf1.layers.conv2d(h, 4, 1, name="head/box"), [-1, grid * grid, 4])
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=cls_targets, logits=cls_logits)) + \
            tf1.losses.huber_loss(box_targets, deltas)
        train_op = tf1.train.AdamOptimizer(1e-3).minimize(loss)
        with tf1.name_scope("postprocess"):
            boxes = tf.constant(anchors_np)[None] + 0.1 * deltas
            scores = tf.sigmoid(cls_logits)
            nms = tf.image.combined_non_max_suppression(boxes[:, :, None, :], scores, 5, 10, 0.5, 0.05)
    feed = {images: _images(rng, 4, 16), cls_targets: rng.integers(0, 2, (4, grid * grid, classes)),
            box_targets: rng.standard_normal((4, grid * grid, 4)) * 0.1}
    prefix = _save_trained(tf1, graph, train_op, feed, out_dir)
    _record(tf1, graph, prefix, out_dir, [t.name for t in nms], None, {images.name: _images(rng, 2, 16)})


def ctc_decoder(out_dir):
    """A speech-style sequence model: conv1d over frames, time-major logits, CTC loss
    against sparse labels; deployed through greedy CTC decoding to dense ids."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(29)
    frames, feats, symbols = 12, 6, 5
    graph = tf.Graph()
    with graph.as_default():
        audio = tf1.placeholder(tf.float32, [None, frames, feats], name="features")
        lengths = tf1.placeholder(tf.int32, [None], name="frame_count")
        targets = tf1.sparse_placeholder(tf.int32, name="transcript")
        h = tf1.layers.conv1d(audio, 16, 3, padding="same", activation="relu", name="conv")
        logits = tf.transpose(tf1.layers.dense(h, symbols + 1, name="logits"), [1, 0, 2])
        loss = tf.reduce_mean(tf1.nn.ctc_loss(targets, logits, lengths))
        train_op = tf1.train.AdamOptimizer(1e-3).minimize(loss)
        decoded, _ = tf1.nn.ctc_greedy_decoder(logits, lengths)
        dense = tf.sparse.to_dense(decoded[0], default_value=-1, name="decoded")
    feed = {audio: rng.standard_normal((2, frames, feats)), lengths: np.array([12, 9]),
            targets: tf1.SparseTensorValue([[0, 0], [0, 1], [1, 0]], np.array([1, 2, 3], np.int32), [2, 2])}
    prefix = _save_trained(tf1, graph, train_op, feed, out_dir)
    _record(tf1, graph, prefix, out_dir, [dense.name], None,
            {audio.name: rng.standard_normal((2, frames, feats)).astype(np.float32),
             lengths.name: np.array([12, 7], np.int32)})


def replicas(out_dir):
    """Data-parallel training, as TF1's multi-GPU examples do it: two towers share one
    set of variables, each with its own input feed and loss; gradients are averaged
    and applied once. The deployed model is one tower."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(30)
    graph = tf.Graph()
    with graph.as_default():
        opt = tf1.train.GradientDescentOptimizer(0.05)
        grads, feeds = [], {}
        for k in range(2):
            with tf.name_scope("tower_%d" % k), tf1.variable_scope("model", reuse=k > 0):
                images = tf1.placeholder(tf.float32, [None, 16, 16, 3], name="images")
                labels = tf1.placeholder(tf.int64, [None], name="labels")
                h = tf1.layers.conv2d(images, 8, 3, strides=2, activation="relu", name="conv")
                logits = tf1.layers.dense(tf.reduce_mean(h, axis=[1, 2]), 4, name="logits")
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
                grads.append(opt.compute_gradients(loss))
                feeds[images], feeds[labels] = _images(rng, 2, 16), rng.integers(0, 4, 2)
                if k == 0:
                    first_images, first_logits = images, logits
        averaged = [(tf.add_n([g for g, _ in pair]) / 2.0, pair[0][1]) for pair in zip(*grads)]
        train_op = opt.apply_gradients(averaged, global_step=tf1.train.get_or_create_global_step())
    prefix = _save_trained(tf1, graph, train_op, feeds, out_dir)
    _record(tf1, graph, prefix, out_dir, [first_logits.name], None, {first_images.name: _images(rng, 2, 16)})


def distillation(out_dir):
    """A small student learns from labels and from a larger teacher's softened outputs;
    the teacher's variables are not trained (trainable=False, restored from its own run)."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(31)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 24], name="x")
        labels = tf1.placeholder(tf.int64, [None], name="labels")
        teacher_logits = _dense_tower(tf1, x, [64, 64, 5], "teacher", trainable=False)
        student_logits = _dense_tower(tf1, x, [16, 5], "student")
        student_probs = tf.nn.softmax(student_logits, name="student_probabilities")
        t = 4.0
        soft = tf.nn.softmax(teacher_logits / t)
        kd = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(soft),
                                                                    logits=student_logits / t)) * t * t
        hard = tf1.losses.sparse_softmax_cross_entropy(labels, student_logits)
        train_op = tf1.train.AdamOptimizer(1e-3).minimize(0.7 * kd + 0.3 * hard)
    prefix = _save_trained(tf1, graph, train_op, {x: rng.standard_normal((8, 24)), labels: rng.integers(0, 5, 8)},
                           out_dir)
    _record(tf1, graph, prefix, out_dir, [student_probs.name], None,
            {x.name: rng.standard_normal((3, 24)).astype(np.float32)})


def fixed_feature_loss(out_dir):
    """An image-to-image network trained with a pixel loss plus a perceptual loss: a
    fixed (untrained) feature network scores the output against the target."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(32)
    graph = tf.Graph()

    def features(img, reuse):
        with tf1.variable_scope("feature_net", reuse=reuse):
            h = tf1.layers.conv2d(img, 8, 3, activation="relu", name="conv1", trainable=False)
            return tf1.layers.conv2d(h, 8, 3, activation="relu", name="conv2", trainable=False)

    with graph.as_default():
        noisy = tf1.placeholder(tf.float32, [None, 12, 12, 3], name="noisy")
        clean = tf1.placeholder(tf.float32, [None, 12, 12, 3], name="clean")
        with tf1.variable_scope("denoiser"):
            h = tf1.layers.conv2d(noisy, 16, 3, padding="same", activation="relu", name="conv1")
            restored = tf1.layers.conv2d(h, 3, 3, padding="same", name="conv2") + noisy
        loss = tf1.losses.mean_squared_error(clean, restored) + \
            0.1 * tf.reduce_mean(tf.square(features(restored, None) - features(clean, True)))
        train_op = tf1.train.AdamOptimizer(1e-3).minimize(loss)
    prefix = _save_trained(tf1, graph, train_op, {noisy: _images(rng, 2, 12), clean: _images(rng, 2, 12)}, out_dir)
    _record(tf1, graph, prefix, out_dir, [restored.name], None, {noisy.name: _images(rng, 2, 12)})


def keras_regnet(out_dir):
    _keras_app(out_dir, lambda keras: keras.applications.RegNetX002(
        input_shape=(32, 32, 3), weights=None, classes=5),
        "categorical_crossentropy", lambda keras: keras.optimizers.legacy.RMSprop(1e-3),
        lambda rng, n: np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)])


def keras_efficientnet(out_dir):
    _keras_app(out_dir, lambda keras: keras.applications.EfficientNetB0(
        input_shape=(32, 32, 3), weights=None, classes=5),
        "sparse_categorical_crossentropy", lambda keras: keras.optimizers.legacy.Adam(1e-3),
        lambda rng, n: rng.integers(0, 5, n))


def batch_hard_triplet(out_dir):
    """One embedding tower over a batch with class labels; the batch-hard triplet loss
    compares every pair of embeddings in the batch (a pairwise distance matrix) and
    picks the hardest positive and negative per anchor with label masks."""
    tf, tf1 = _tf()
    rng = np.random.default_rng(33)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 16], name="features")
        labels = tf1.placeholder(tf.int32, [None], name="identity")
        emb = tf.nn.l2_normalize(_dense_tower(tf1, x, [32, 8], "embedder"), axis=1, name="embedding")
        dot = tf.matmul(emb, emb, transpose_b=True)
        sq = tf.linalg.diag_part(dot)
        dist = tf.maximum(tf.expand_dims(sq, 0) - 2.0 * dot + tf.expand_dims(sq, 1), 0.0)
        same = tf.cast(tf.equal(tf.expand_dims(labels, 0), tf.expand_dims(labels, 1)), tf.float32)
        hardest_pos = tf.reduce_max(dist * same, axis=1)
        hardest_neg = tf.reduce_min(dist + 4.0 * same, axis=1)
        loss = tf.reduce_mean(tf.maximum(hardest_pos - hardest_neg + 0.2, 0.0))
        train_op = tf1.train.AdamOptimizer(1e-3).minimize(loss)
    feed = {x: rng.standard_normal((8, 16)), labels: np.repeat(np.arange(4), 2)}
    prefix = _save_trained(tf1, graph, train_op, feed, out_dir)
    _record(tf1, graph, prefix, out_dir, [emb.name], None, {x.name: rng.standard_normal((3, 16)).astype(np.float32)})
