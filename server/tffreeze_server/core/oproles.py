"""The one table of op roles: which TensorFlow ops do what, for every module that asks.

Each role is a set of op names (or, where TensorFlow names a family by a prefix or
its OpDef says it, a predicate). A module that needs an op set imports it from here;
none keeps its own copy. Read as data: nothing is imported into TensorFlow.

Roles (what the resolver and the rewrites rely on):

* **data in**: placeholders, tf.data's ``IteratorGetNext``/``IteratorGetNextSync``,
  queue dequeues (``DATA_SOURCE_OPS``); the input pipeline's own ops (``is_input_pipeline_op``);
* **state**: variables (``VARIABLE_OPS``), their reads, the checkpoint's save/restore ops;
* **training**: optimizer updates, assignments and scatters, summaries (``is_training_op``),
  moving-average updates;
* **bookkeeping**: what a training graph runs beside the model (no-ops, asserts, prints,
  savers, initialisation checks, shape measurements): never a model output;
* **shape arithmetic**: ops that measure a tensor's shape (``SHAPE_OPS``);
* **model**: layer ops that apply weights, their activations and reshapes;
* **post-processing**: heads after a model's last layer (softmax, argmax, top-k) and
  selections that come with their indices;
* **control flow**: v1 loops and conds, v2 functional ops;
* **stateful / random**: read off the OpDef (``is_stateful``) and the op's name (``is_random``).
"""

from __future__ import annotations

from typing import FrozenSet

# -- data in -------------------------------------------------------------------------
PLACEHOLDER_OPS: FrozenSet[str] = frozenset({"Placeholder", "PlaceholderWithDefault", "PlaceholderV2"})
# Where tf.data hands elements to the model: the graph is cut here (its outputs become placeholders).
ITERATOR_GET_NEXT_OPS: FrozenSet[str] = frozenset({"IteratorGetNext", "IteratorGetNextSync"})
QUEUE_DEQUEUE_OPS: FrozenSet[str] = frozenset({"QueueDequeueV2", "QueueDequeueManyV2", "QueueDequeueUpToV2"})
# Where data enters a training graph (what a model or its loss reads from outside).
DATA_SOURCE_OPS: FrozenSet[str] = (PLACEHOLDER_OPS | ITERATOR_GET_NEXT_OPS | QUEUE_DEQUEUE_OPS
                                   | frozenset({"OneShotIterator"}))


def is_input_pipeline_op(op: str) -> bool:
    """tf.data's own ops (datasets, iterators and their handles): never a model output."""
    return (op in ITERATOR_GET_NEXT_OPS or "Dataset" in op or "Iterator" in op
            or op in ("MakeIterator", "DeleteIterator"))


# -- state ---------------------------------------------------------------------------
VARIABLE_OPS: FrozenSet[str] = frozenset({"Variable", "VariableV2", "VarHandleOp"})
# Ops that read a variable (or forward what reads one) without computing anything.
VARIABLE_READ_OPS: FrozenSet[str] = frozenset({"Identity", "ReadVariableOp", "Enter", "RefEnter", "Switch",
                                               "RefSwitch"})
RESTORE_OPS: FrozenSet[str] = frozenset({"RestoreV2", "RestoreSlice", "Restore"})
# The saver a TF2 SavedModel carries (V2 checkpoints): the only ops its save/restore part may hold.
SAVED_MODEL_SAVER_OPS: FrozenSet[str] = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename",
                                                   "ShardedFilespec"})
CHECKPOINT_OPS: FrozenSet[str] = (SAVED_MODEL_SAVER_OPS | RESTORE_OPS
                                  | frozenset({"Save", "SaveSlices"}))
ASSIGN_OPS: FrozenSet[str] = frozenset({"Assign", "AssignVariableOp"})

# -- training ------------------------------------------------------------------------
OPTIMIZER_UPDATE_PREFIXES = ("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply")
_WRITE_PREFIXES = OPTIMIZER_UPDATE_PREFIXES + ("Assign", "Scatter", "ResourceScatter")
SUMMARY_SUFFIXES = ("Summary", "SummaryV2")
# Updates training makes in place besides the optimizer's (batch norm's moving mean and variance).
MOVING_AVERAGE_UPDATE_OPS: FrozenSet[str] = frozenset({"AssignSub", "AssignSubVariableOp", "AssignMovingAvg"})
# Adding into a variable: what a streaming metric's totals and counts (and a step counter) are.
ACCUMULATE_OPS: FrozenSet[str] = frozenset({"AssignAdd", "AssignAddVariableOp", "ScatterAdd", "ResourceScatterAdd"})


def is_optimizer_update(op: str) -> bool:
    """An optimizer applying a gradient to a variable (ApplyAdam, ResourceSparseApplyAdagrad...)."""
    return op.startswith(OPTIMIZER_UPDATE_PREFIXES)


def is_summary_op(op: str) -> bool:
    return op.endswith(SUMMARY_SUFFIXES)


def is_training_op(op: str) -> bool:
    """Optimizer updates, assignments, scatters into variables, summaries."""
    return op.startswith(_WRITE_PREFIXES) or is_summary_op(op)


# -- shape arithmetic ----------------------------------------------------------------
# Ops that measure a tensor's shape: what they read does not matter, only its shape.
SHAPE_OPS: FrozenSet[str] = frozenset({"Shape", "ShapeN", "Size", "Rank", "TensorListLength", "TensorArraySizeV3"})

# -- bookkeeping ---------------------------------------------------------------------
DEBUG_OPS: FrozenSet[str] = frozenset({"Print", "PrintV2", "Assert", "CheckNumerics", "CheckNumericsV2"})
# Debug ops that hand their first input on (the others only have an effect).
DEBUG_FORWARDING_OPS: FrozenSet[str] = frozenset({"Print", "CheckNumerics", "CheckNumericsV2"})
# What a training graph runs beside the model: never a model output.
BOOKKEEPING_OPS: FrozenSet[str] = (
    frozenset({"NoOp", "Const", "Assert", "Print", "PrintV2", "StringFormat", "StringJoin", "MergeSummary", "WriteFile",
               "VarIsInitializedOp", "IsVariableInitialized", "ReadVariableOp", "DestroyResourceOp",
               "ReportUninitializedVariables",
               # structural by-products (a loss's label Shape, ...) are not model outputs
               "BroadcastGradientArgs"})
    | CHECKPOINT_OPS | frozenset({"Shape", "ShapeN", "Size", "Rank"}) | PLACEHOLDER_OPS | VARIABLE_OPS)

# A run's own scratch state (TensorArrays, stacks), released when it is done: no variable.
SCRATCH_RELEASE_OPS: FrozenSet[str] = frozenset({"TensorArrayClose", "TensorArrayCloseV2", "TensorArrayCloseV3",
                                                 "StackClose", "StackCloseV2"})

# -- control flow --------------------------------------------------------------------
CONTROL_FLOW_V1_OPS: FrozenSet[str] = frozenset({"Switch", "RefSwitch", "Merge", "RefMerge", "Enter", "RefEnter",
                                                 "Exit", "RefExit", "NextIteration", "RefNextIteration", "LoopCond"})
LOOP_EXIT_OPS: FrozenSet[str] = frozenset({"Exit", "RefExit"})
LOOP_ENTER_OPS: FrozenSet[str] = frozenset({"Enter", "RefEnter"})
SWITCH_OPS: FrozenSet[str] = frozenset({"Switch", "RefSwitch"})
MERGE_OPS: FrozenSet[str] = frozenset({"Merge", "RefMerge"})
BACK_EDGE_OPS: FrozenSet[str] = frozenset({"NextIteration", "RefNextIteration"})
# v2 control flow: a loop's or cond's results come out of the op itself.
FUNCTIONAL_CONTROL_FLOW_OPS: FrozenSet[str] = frozenset({"While", "StatelessWhile", "If", "StatelessIf", "Case",
                                                         "StatelessCase"})
CALL_OPS: FrozenSet[str] = frozenset({"PartitionedCall", "StatefulPartitionedCall"})

# -- model ---------------------------------------------------------------------------
# Ops that apply weights to data (and loops or function calls that take weights in).
LAYER_OPS: FrozenSet[str] = frozenset({
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "SparseMatMul", "Einsum",
    "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3DBackpropInputV2",
    "BiasAdd", "BiasAddV1", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3",
    "Gather", "GatherV2", "GatherNd", "ResourceGather", "ResourceGatherNd",
    "LSTMBlockCell", "GRUBlockCell", "BlockLSTM", "BlockLSTMV2", "CudnnRNN", "CudnnRNNV2", "CudnnRNNV3",
}) | FUNCTIONAL_CONTROL_FLOW_OPS | CALL_OPS
# Elementwise ops that are a layer when one side is a variable read (x * w + b written by hand).
ELEMENTWISE_LAYER_OPS: FrozenSet[str] = frozenset({"Add", "AddV2", "Mul", "Sub"})
FUSED_BATCH_NORM_OPS: FrozenSet[str] = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
# The same tensor handed on (its dtype is its input's).
FORWARDING_OPS: FrozenSet[str] = frozenset({"Identity", "Enter", "Exit", "Switch", "RefSwitch", "NextIteration",
                                            "Snapshot", "StopGradient"})
# Same values, another shape or name.
ALIAS_OPS: FrozenSet[str] = frozenset({"Identity", "Reshape", "Squeeze", "ExpandDims", "StopGradient", "Snapshot"})
# A part of a tensor, or the same values in another shape (what a loss takes of a model's tensor).
VIEW_OPS: FrozenSet[str] = ALIAS_OPS | frozenset({"StridedSlice", "Slice", "Transpose"})
ACTIVATION_OPS: FrozenSet[str] = frozenset({"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Softmax",
                                            "LogSoftmax", "Softplus", "Softsign", "LeakyRelu"})
# A layer's own end: its activation and the rearrangements that finish it (a reshape, a transpose, a
# pixel shuffle: each moves the layer's values without computing with them).
LAYER_END_OPS: FrozenSet[str] = ACTIVATION_OPS | frozenset({"Identity", "Reshape", "Squeeze", "ExpandDims",
                                                            "Snapshot", "Transpose", "DepthToSpace",
                                                            "SpaceToDepth"})
# Ops a loss uses to compare a batch with itself (a Gram matrix, pairwise differences).
PAIRWISE_OPS: FrozenSet[str] = frozenset({"MatMul", "BatchMatMulV2", "Sub", "SquaredDifference"})
# Ops that compare a prediction with a label (an accuracy), unlike ops that take a
# label-free side input with the model's output (a decoder's sequence lengths).
COMPARISON_OPS: FrozenSet[str] = frozenset({"Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual",
                                            "InTopK", "InTopKV2"})
# Operands that say where values go or which are taken (indices, a partition, a condition), never
# values compared: op -> the positions of those operands (DynamicStitch: its first half).
ROUTING_OPERANDS = {"Gather": (1,), "GatherV2": (1,), "GatherNd": (1,), "ResourceGather": (1,),
                    "ResourceGatherNd": (1,), "ScatterNd": (0,), "TensorScatterUpdate": (1,),
                    "TensorScatterAdd": (1,), "DynamicPartition": (1,), "Select": (0,), "SelectV2": (0,),
                    "Where": (0,), "UnsortedSegmentSum": (1,), "UnsortedSegmentMean": (1,),
                    "UnsortedSegmentMax": (1,), "SegmentSum": (1,), "SegmentMean": (1,), "SegmentMax": (1,),
                    "DynamicStitch": "first half", "ParallelDynamicStitch": "first half"}


def routing_operands(op: str, count: int) -> FrozenSet[int]:
    """The positions of ``op``'s routing operands (``ROUTING_OPERANDS``) among its ``count`` data inputs."""
    where = ROUTING_OPERANDS.get(op, ())
    return frozenset(range(count // 2)) if where == "first half" else frozenset(where)


# Ops whose first operand is the true classes (a sampled loss's labels: its candidates are drawn beside them).
TRUE_CLASSES_OPS: FrozenSet[str] = frozenset({
    "AllCandidateSampler", "ComputeAccidentalHits", "FixedUnigramCandidateSampler", "LearnedUnigramCandidateSampler",
    "LogUniformCandidateSampler", "ThreadUnsafeUnigramCandidateSampler", "UniformCandidateSampler"})

# -- post-processing -----------------------------------------------------------------
# Heads after a model's last layer: probabilities, classes, the best k.
HEAD_OPS: FrozenSet[str] = frozenset({"Softmax", "Sigmoid", "LogSoftmax", "ArgMax", "ArgMin", "TopKV2", "TopK"})
# What turns a model's scores into its decision, reading them unchanged otherwise (an accuracy's argmax).
DECISION_OPS: FrozenSet[str] = ALIAS_OPS | frozenset({"Cast", "ArgMax", "ArgMin", "Round", "Rint", "Floor", "Ceil", "Sign"})
# Selections whose values come with the indices that say what was selected: op -> what output 1 is.
SELECTION_OPS = {"TopKV2": "the indices of the top-k values", "TopK": "the indices of the top-k values"}


# -- stateful / random ---------------------------------------------------------------
def is_stateful(op: str) -> bool:
    """The OpDef says the op is stateful (an unknown op counts as stateful)."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(op)
    return op_def is None or op_def.is_stateful


def is_random(op: str) -> bool:
    """Draws random numbers (stateful or stateless: RandomUniform, StatelessRandomNormalV2,
    TruncatedNormal, Multinomial, RandomShuffle...)."""
    return "Random" in op or op in ("TruncatedNormal", "StatelessTruncatedNormal", "StatelessTruncatedNormalV2",
                                    "Multinomial", "StatelessMultinomial", "ParameterizedTruncatedNormal")


__all__ = [name for name in dir() if name.isupper() or name.startswith("is_")]
