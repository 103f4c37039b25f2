// Tensors from flat arrays and back, and NumPy's dtype names, written only against the
// API TensorFlowSharp and tffreeze's binding share: this file builds against either
// (-define:TENSORFLOWSHARP selects TensorFlowSharp's namespace).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
#if TENSORFLOWSHARP
using TensorFlow;
#else
using TfFreeze.TensorFlow;
#endif

namespace TfFreeze
{
    public static class Tensors
    {
        // dtype -> (NumPy name, CLR element type, bytes per element in a tensor)
        static readonly Dictionary<TFDataType, Tuple<string, Type, int>> kinds = new Dictionary<TFDataType, Tuple<string, Type, int>> {
            { TFDataType.Float, Tuple.Create("float32", typeof(float), 4) }, { TFDataType.Double, Tuple.Create("float64", typeof(double), 8) },
            { TFDataType.Int32, Tuple.Create("int32", typeof(int), 4) }, { TFDataType.Int64, Tuple.Create("int64", typeof(long), 8) },
            { TFDataType.UInt8, Tuple.Create("uint8", typeof(byte), 1) }, { TFDataType.Int8, Tuple.Create("int8", typeof(sbyte), 1) },
            { TFDataType.Int16, Tuple.Create("int16", typeof(short), 2) }, { TFDataType.UInt16, Tuple.Create("uint16", typeof(ushort), 2) },
            { TFDataType.Bool, Tuple.Create("bool", typeof(bool), 1) } };

        static Tuple<string, Type, int> Kind(TFDataType dtype)
        {
            Tuple<string, Type, int> kind;
            if (!kinds.TryGetValue(dtype, out kind))
                throw new NotSupportedException("dtype " + dtype + " is not supported here (" + string.Join(", ", kinds.Values.Select(k => k.Item1)) +
                                                "; text or float16 tensors: run the graph with `tffreeze run`, the Python client)");
            return kind;
        }

        /// <summary>NumPy's name of a dtype ("float32"), as tffreeze manifests write them.</summary>
        public static string NumpyName(TFDataType dtype)
        {
            Tuple<string, Type, int> kind;
            return kinds.TryGetValue(dtype, out kind) ? kind.Item1 : dtype.ToString().ToLowerInvariant();
        }

        /// <summary>The dtype NumPy calls <paramref name="name"/>; null when this file does not handle it.</summary>
        public static TFDataType? FromNumpyName(string name)
        {
            foreach (var kv in kinds) if (kv.Value.Item1 == name) return kv.Key;
            return null;
        }

        public static Type ElementType(TFDataType dtype) { return Kind(dtype).Item2; }
        public static int ElementSize(TFDataType dtype) { return Kind(dtype).Item3; }

        public static long Count(long[] shape) { return shape.Aggregate(1L, (a, b) => a * b); }

        /// <summary>A tensor of <paramref name="shape"/> holding <paramref name="flat"/> (row-major,
        /// element type matching <paramref name="dtype"/>).</summary>
        public static TFTensor Create(TFDataType dtype, long[] shape, Array flat)
        {
            var kind = Kind(dtype);
            if (flat.GetType().GetElementType() != kind.Item2)
                throw new ArgumentException("a " + kind.Item1 + " tensor needs " + kind.Item2.Name + "[] data, got " + flat.GetType().Name);
            if (shape.Any(d => d < 0)) throw new ArgumentException("shape [" + string.Join(", ", shape) + "] has a negative dimension");
            if (Count(shape) != flat.Length)
                throw new ArgumentException("shape [" + string.Join(", ", shape) + "] holds " + Count(shape) + " elements, got " + flat.Length);
            if (shape.Length == 0) return Scalar(flat.GetValue(0));
            var array = Array.CreateInstance(kind.Item2, shape.Select(d => checked((int)d)).ToArray());
            if (flat.Length > 0) Buffer.BlockCopy(flat, 0, array, 0, flat.Length * kind.Item3);
            return new TFTensor(array);
        }

        static TFTensor Scalar(object value)
        {
            if (value is float) return new TFTensor((float)value);
            if (value is double) return new TFTensor((double)value);
            if (value is int) return new TFTensor((int)value);
            if (value is long) return new TFTensor((long)value);
            if (value is byte) return new TFTensor((byte)value);
            if (value is sbyte) return new TFTensor((sbyte)value);
            if (value is short) return new TFTensor((short)value);
            if (value is ushort) return new TFTensor((ushort)value);
            if (value is bool) return new TFTensor((bool)value);
            throw new NotSupportedException("scalars of " + value.GetType().Name + " are not supported");
        }

        /// <summary>The tensor's elements in row-major order, as a one-dimensional array of its element type.</summary>
        public static Array Flat(TFTensor tensor)
        {
            var kind = Kind(tensor.TensorType);
            long count = Count(tensor.Shape);
            var flat = Array.CreateInstance(kind.Item2, count);
            if (count == 0) return flat;
            var bytes = new byte[count * kind.Item3];
            Marshal.Copy(tensor.Data, bytes, 0, bytes.Length);
            Buffer.BlockCopy(bytes, 0, flat, 0, bytes.Length);
            return flat;
        }
    }
}
