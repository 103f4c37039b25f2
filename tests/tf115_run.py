"""Run a frozen graph in an older TensorFlow: 1.15 (Python 3.7 venv from `make tf115`) or
2.3.1 (Python 3.8 venv from `make tf23`).

usage: .tf115/bin/python tests/tf115_run.py MODEL.pb FEEDS.npz FETCH[,FETCH...] OUT.npz
FEEDS.npz keys are tensor names with ':' written as '__'. Prints the TF version.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow  # noqa: E402

tf = tensorflow.compat.v1  # the graph API of 1.15 and 2.x alike


def main(model, feeds_path, fetches, out):
    graph_def = tf.GraphDef()
    with open(model, "rb") as fh:
        graph_def.ParseFromString(fh.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    feeds = {k.replace("__", ":"): v for k, v in np.load(feeds_path).items()}
    names = fetches.split(",")
    with tf.Session(graph=graph) as sess:
        values = sess.run(names, feeds)
    np.savez(out, **{n.replace(":", "__"): v for n, v in zip(names, values)})
    print(tensorflow.__version__)


if __name__ == "__main__":
    main(*sys.argv[1:])
