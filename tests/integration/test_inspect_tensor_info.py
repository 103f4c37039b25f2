"""inspect describes each tensor as a freeze does (found in the third round of untried kinds):
the shape and dtype of the output a tensor name picks (``split:1``, not ``split:0``'s), and a
placeholder_with_default's default."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tffreeze_server.core import engine  # noqa: E402
from tffreeze_server.core.spec import FreezeSpec  # noqa: E402

tf1 = tf.compat.v1


def _checkpoint(folder):
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        scale = tf1.placeholder_with_default(2.0, [], name="scale")
        flat = tf.matmul(x, tf1.get_variable("w", [3, 7])) * scale
        tf.split(flat, [4, 1, 2], axis=1, name="split")
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, os.path.join(folder, "model"))
    return folder


def _shape(info):
    return [int(v.number_value) for v in info.shape.values]


def test_inspect_describes_the_output_a_name_picks_and_a_default(tmp_path):
    folder = _checkpoint(str(tmp_path))
    spec = FreezeSpec(outputs=["split:1", "split:2"])
    seen = engine.inspect(folder, spec)
    assert [(o.name, o.dtype, _shape(o)) for o in seen.outputs] == [
        ("split:1", "float32", [-1, 1]), ("split:2", "float32", [-1, 2])]
    scale = [i for i in seen.inputs if i.name == "scale:0"]
    assert scale and scale[0].has_default and scale[0].default.number_value == 2.0
    frozen = engine.freeze(folder, spec, str(tmp_path / "out.pb"))  # as the freeze's manifest says
    assert [(o.name, _shape(o)) for o in frozen.outputs] == [(o.name, _shape(o)) for o in seen.outputs]
    assert [(i.name, i.has_default) for i in frozen.inputs] == [(i.name, i.has_default) for i in seen.inputs]
