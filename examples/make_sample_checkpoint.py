"""Write a sample tf.train.Saver checkpoint directory for `make demo`.

A two-layer classifier (x[?,4] -> relu -> softmax), trained for a few steps on
random data, saved at two global steps, plus the inputs and the model's own
outputs at the last step (x.npy, expected.npy) to check the frozen graph against.

usage: python examples/make_sample_checkpoint.py OUT_DIR
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1


def main(out_dir: str) -> None:
    ckpt_dir = os.path.join(out_dir, "ckpt")
    os.makedirs(ckpt_dir, exist_ok=True)
    rng = np.random.RandomState(42)
    data = rng.randn(64, 4).astype(np.float32)
    labels = (data[:, 0] + data[:, 1] > 0).astype(np.int64)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        y_true = tf1.placeholder(tf.int64, [None], name="labels")
        w1 = tf1.get_variable("hidden/kernel", [4, 8], initializer=tf1.glorot_uniform_initializer(seed=1))
        b1 = tf1.get_variable("hidden/bias", [8], initializer=tf1.zeros_initializer())
        w2 = tf1.get_variable("out/kernel", [8, 2], initializer=tf1.glorot_uniform_initializer(seed=2))
        b2 = tf1.get_variable("out/bias", [2], initializer=tf1.zeros_initializer())
        h = tf.nn.relu(tf.matmul(x, w1) + b1)
        logits = tf.add(tf.matmul(h, w2), b2, name="logits")
        probs = tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_true, logits=logits))
        step = tf1.train.get_or_create_global_step()
        train = tf1.train.GradientDescentOptimizer(0.5).minimize(loss, global_step=step)
        tf1.add_to_collection("probs", probs)
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for i in range(1, 201):
                sess.run(train, {x: data, y_true: labels})
                if i % 100 == 0:
                    saver.save(sess, os.path.join(ckpt_dir, "model.ckpt"), global_step=step)
            sample = data[:5]
            np.save(os.path.join(out_dir, "x.npy"), sample)
            np.save(os.path.join(out_dir, "expected.npy"), sess.run(probs, {x: sample}))
    print("wrote %s (checkpoints at steps 100 and 200)" % ckpt_dir)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
