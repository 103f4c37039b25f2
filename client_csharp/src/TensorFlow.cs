// A binding over the TensorFlow C API with TensorFlowSharp's user-facing shape:
// TFGraph.Import, graph["op"][i], TFSession, GetRunner().AddInput(..).Fetch(..).Run(),
// TFTensor from arrays with shape, GetValue(), Shape. Code written against it reads
// like TensorFlowSharp code; only the namespace differs.
//
// The native library is loaded at run time (dlopen), so one build runs on the TF 2.x
// C API inside the TensorFlow pip wheel (libtensorflow_framework.so.2 +
// libtensorflow_cc.so.2) and on TF 1.15's (_pywrap_tensorflow_internal.so, the
// runtime TensorFlowSharp bundles). Every TF_Status is checked and turned into a
// TFException carrying TensorFlow's message; native handles are released by Dispose
// (and by finalizers as a last resort).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;

namespace TfFreeze.TensorFlow
{
    public enum TFDataType { Float = 1, Double = 2, Int32 = 3, UInt8 = 4, Int16 = 5, Int8 = 6, String = 7, Int64 = 9, Bool = 10 }

    public enum TFCode { Ok = 0, Cancelled = 1, Unknown = 2, InvalidArgument = 3, DeadlineExceeded = 4, NotFound = 5,
        AlreadyExists = 6, PermissionDenied = 7, ResourceExhausted = 8, FailedPrecondition = 9, Aborted = 10,
        OutOfRange = 11, Unimplemented = 12, Internal = 13, Unavailable = 14, DataLoss = 15, Unauthenticated = 16 }

    public class TFException : Exception
    {
        public TFCode Code { get; private set; }
        public TFException(TFCode code, string message) : base(message) { Code = code; }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct TFOutput
    {
        public IntPtr Operation;
        public int Index;
        public TFOutput(TFOperation op, int index) { Operation = op.Handle; Index = index; }
    }

    /// <summary>Finds and binds the TF C API. Call Load once (TFGraph/TFSession do it lazily).</summary>
    public static class TFNative
    {
        const int RTLD_NOW = 2, RTLD_GLOBAL = 0x100;
        [DllImport("libdl.so.2")] static extern IntPtr dlopen(string file, int mode);
        [DllImport("libdl.so.2")] static extern IntPtr dlsym(IntPtr handle, string name);
        [DllImport("libdl.so.2")] static extern IntPtr dlerror();

        static readonly List<IntPtr> handles = new List<IntPtr>();
        public static string LoadedFrom { get; private set; }

        /// <summary>Load the C API from a library file or a directory holding one: a TF 2.x
        /// wheel's tensorflow/ (libtensorflow_framework.so.2 + libtensorflow_cc.so.2), a
        /// libtensorflow.so, or TF 1.15's _pywrap_tensorflow_internal.so.</summary>
        public static void Load(string path)
        {
            if (LoadedFrom != null) return;
            if (path == null) throw new TFException(TFCode.NotFound,
                "no TensorFlow C library: pass --libtensorflow PATH or set TFFREEZE_LIBTENSORFLOW");
            var files = new List<string>();
            if (Directory.Exists(path))
            {
                // The first layout whose files all exist: a TF 2.x wheel, libtensorflow, TF 1.x's Python extension.
                var layouts = new[] {
                    new[] { "libtensorflow_framework.so.2", "libtensorflow_cc.so.2" }, new[] { "libtensorflow.so.2" },
                    new[] { "libtensorflow.so" }, new[] { "libtensorflow_framework.so.1", "libtensorflow.so.1" },
                    new[] { "python/_pywrap_tensorflow_internal.so" }, new[] { "_pywrap_tensorflow_internal.so" } };
                var found = layouts.FirstOrDefault(l => l.All(n => File.Exists(Path.Combine(path, n))));
                if (found != null) files.AddRange(found.Select(n => Path.Combine(path, n)));
            }
            else if (File.Exists(path)) files.Add(path);
            if (files.Count == 0) throw new TFException(TFCode.NotFound,
                "no TensorFlow C library at " + path + " (expected libtensorflow_cc.so.2, libtensorflow.so or _pywrap_tensorflow_internal.so)");
            foreach (var f in files)
            {
                var h = dlopen(f, RTLD_NOW | RTLD_GLOBAL);
                if (h == IntPtr.Zero)
                {
                    var err = Marshal.PtrToStringAnsi(dlerror());
                    throw new TFException(TFCode.FailedPrecondition, "cannot load " + f + ": " + err +
                        (f.Contains("_pywrap") ? " (TF 1.15's library needs libpython3.7m preloaded: LD_PRELOAD)" : ""));
                }
                handles.Add(h);
            }
            Api.Bind();
            LoadedFrom = string.Join(", ", files);
        }

        internal static T Fn<T>(string name) where T : class
        {
            foreach (var h in handles)
            {
                var p = dlsym(h, name);
                if (p != IntPtr.Zero) return Marshal.GetDelegateForFunctionPointer(p, typeof(T)) as T;
            }
            throw new TFException(TFCode.NotFound, "the TensorFlow library has no " + name);
        }

        public static string Version { get { return Marshal.PtrToStringAnsi(Api.Version()); } }
    }

    internal static class Api
    {
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr Ptr0();
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void Void1(IntPtr a);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr Ptr1(IntPtr a);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int Int1(IntPtr a);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate long Long2(IntPtr a, int i);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate UIntPtr Size1(IntPtr a);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr BufferFromString(byte[] data, UIntPtr len);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void SetPrefix(IntPtr opts, string prefix);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void ImportGraphDef(IntPtr graph, IntPtr buffer, IntPtr opts, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr OperationByName(IntPtr graph, string name);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int OutputType(TFOutput output);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int NumDims(IntPtr graph, TFOutput output, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void GetShape(IntPtr graph, TFOutput output, long[] dims, int n, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr NewSessionFn(IntPtr graph, IntPtr opts, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void Void2(IntPtr a, IntPtr b);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr AllocateTensor(int dtype, long[] dims, int ndims, UIntPtr len);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void SessionRun(IntPtr session, IntPtr runOptions,
            TFOutput[] inputs, IntPtr[] inputValues, int ninputs, TFOutput[] outputs, IntPtr[] outputValues, int noutputs,
            IntPtr[] targets, int ntargets, IntPtr runMetadata, IntPtr status);

        public static Ptr0 NewStatus, NewGraph, NewImportGraphDefOptions, NewSessionOptions, Version;
        public static Void1 DeleteStatus, DeleteGraph, DeleteImportGraphDefOptions, DeleteSessionOptions, DeleteBuffer, DeleteTensor;
        public static Int1 GetCode, TensorType, NumDimsOfTensor, OperationNumOutputs;
        public static Ptr1 Message, TensorData, OperationName, OperationOpType;
        public static Long2 Dim;
        public static Size1 TensorByteSize;
        public static BufferFromString NewBufferFromString;
        public static SetPrefix ImportGraphDefOptionsSetPrefix;
        public static ImportGraphDef GraphImportGraphDef;
        public static OperationByName GraphOperationByName;
        public static OutputType OperationOutputType;
        public static NumDims GraphGetTensorNumDims;
        public static GetShape GraphGetTensorShape;
        public static NewSessionFn NewSession;
        public static Void2 CloseSession, DeleteSession;
        public static AllocateTensor Allocate;
        public static SessionRun Run;

        public static void Bind()
        {
            NewStatus = TFNative.Fn<Ptr0>("TF_NewStatus"); DeleteStatus = TFNative.Fn<Void1>("TF_DeleteStatus");
            GetCode = TFNative.Fn<Int1>("TF_GetCode"); Message = TFNative.Fn<Ptr1>("TF_Message");
            Version = TFNative.Fn<Ptr0>("TF_Version");
            NewGraph = TFNative.Fn<Ptr0>("TF_NewGraph"); DeleteGraph = TFNative.Fn<Void1>("TF_DeleteGraph");
            NewImportGraphDefOptions = TFNative.Fn<Ptr0>("TF_NewImportGraphDefOptions");
            DeleteImportGraphDefOptions = TFNative.Fn<Void1>("TF_DeleteImportGraphDefOptions");
            ImportGraphDefOptionsSetPrefix = TFNative.Fn<SetPrefix>("TF_ImportGraphDefOptionsSetPrefix");
            NewBufferFromString = TFNative.Fn<BufferFromString>("TF_NewBufferFromString");
            DeleteBuffer = TFNative.Fn<Void1>("TF_DeleteBuffer");
            GraphImportGraphDef = TFNative.Fn<ImportGraphDef>("TF_GraphImportGraphDef");
            GraphOperationByName = TFNative.Fn<OperationByName>("TF_GraphOperationByName");
            OperationNumOutputs = TFNative.Fn<Int1>("TF_OperationNumOutputs");
            OperationName = TFNative.Fn<Ptr1>("TF_OperationName"); OperationOpType = TFNative.Fn<Ptr1>("TF_OperationOpType");
            OperationOutputType = TFNative.Fn<OutputType>("TF_OperationOutputType");
            GraphGetTensorNumDims = TFNative.Fn<NumDims>("TF_GraphGetTensorNumDims");
            GraphGetTensorShape = TFNative.Fn<GetShape>("TF_GraphGetTensorShape");
            NewSessionOptions = TFNative.Fn<Ptr0>("TF_NewSessionOptions"); DeleteSessionOptions = TFNative.Fn<Void1>("TF_DeleteSessionOptions");
            NewSession = TFNative.Fn<NewSessionFn>("TF_NewSession");
            CloseSession = TFNative.Fn<Void2>("TF_CloseSession"); DeleteSession = TFNative.Fn<Void2>("TF_DeleteSession");
            Allocate = TFNative.Fn<AllocateTensor>("TF_AllocateTensor"); DeleteTensor = TFNative.Fn<Void1>("TF_DeleteTensor");
            TensorData = TFNative.Fn<Ptr1>("TF_TensorData"); TensorByteSize = TFNative.Fn<Size1>("TF_TensorByteSize");
            TensorType = TFNative.Fn<Int1>("TF_TensorType"); NumDimsOfTensor = TFNative.Fn<Int1>("TF_NumDims");
            Dim = TFNative.Fn<Long2>("TF_Dim");
            Run = TFNative.Fn<SessionRun>("TF_SessionRun");
        }
    }

    public abstract class TFDisposable : IDisposable
    {
        public IntPtr Handle { get; protected set; }
        protected abstract void NativeDispose(IntPtr handle);
        public void Dispose() { Dispose(true); GC.SuppressFinalize(this); }
        protected virtual void Dispose(bool disposing)
        {
            if (Handle != IntPtr.Zero) { NativeDispose(Handle); Handle = IntPtr.Zero; }
        }
        ~TFDisposable() { Dispose(false); }
    }

    public class TFStatus : TFDisposable
    {
        public TFStatus() { Handle = Api.NewStatus(); }
        protected override void NativeDispose(IntPtr h) { Api.DeleteStatus(h); }
        public TFCode StatusCode { get { return (TFCode)Api.GetCode(Handle); } }
        public string StatusMessage { get { return Marshal.PtrToStringAnsi(Api.Message(Handle)); } }
        public bool Ok { get { return StatusCode == TFCode.Ok; } }
        /// <summary>Throw a TFException with TensorFlow's message unless the status is OK.</summary>
        public void Check() { if (!Ok) throw new TFException(StatusCode, StatusMessage); }
    }

    public class TFImportGraphDefOptions : TFDisposable
    {
        public TFImportGraphDefOptions() { Handle = Api.NewImportGraphDefOptions(); }
        protected override void NativeDispose(IntPtr h) { Api.DeleteImportGraphDefOptions(h); }
        public void SetPrefix(string prefix) { Api.ImportGraphDefOptionsSetPrefix(Handle, prefix); }
    }

    public class TFOperation
    {
        public IntPtr Handle { get; private set; }
        internal TFOperation(IntPtr h) { Handle = h; }
        public string Name { get { return Marshal.PtrToStringAnsi(Api.OperationName(Handle)); } }
        public string OpType { get { return Marshal.PtrToStringAnsi(Api.OperationOpType(Handle)); } }
        public int NumOutputs { get { return Api.OperationNumOutputs(Handle); } }
        public TFOutput this[int index]
        {
            get
            {
                if (index < 0 || index >= NumOutputs)
                    throw new TFException(TFCode.OutOfRange, "operation " + Name + " has " + NumOutputs + " output(s), not " + (index + 1));
                return new TFOutput(this, index);
            }
        }
    }

    public class TFGraph : TFDisposable
    {
        public TFGraph()
        {
            if (TFNative.LoadedFrom == null) TFNative.Load(Environment.GetEnvironmentVariable("TFFREEZE_LIBTENSORFLOW") ?? Environment.GetEnvironmentVariable("TFFREEZE_DEFAULT_LIB"));
            Handle = Api.NewGraph();
        }
        protected override void NativeDispose(IntPtr h) { Api.DeleteGraph(h); }

        public void Import(byte[] graphDef) { Import(graphDef, ""); }

        public void Import(byte[] graphDef, string prefix)
        {
            using (var options = new TFImportGraphDefOptions())
            {
                if (!string.IsNullOrEmpty(prefix)) options.SetPrefix(prefix);
                Import(graphDef, options);
            }
        }

        public void Import(byte[] graphDef, TFImportGraphDefOptions options)
        {
            var buffer = Api.NewBufferFromString(graphDef, (UIntPtr)graphDef.Length);
            try
            {
                using (var status = new TFStatus())
                {
                    Api.GraphImportGraphDef(Handle, buffer, options.Handle, status.Handle);
                    status.Check();
                }
            }
            finally { Api.DeleteBuffer(buffer); }
        }

        /// <summary>The operation named <paramref name="name"/>, or null (as TensorFlowSharp).</summary>
        public TFOperation this[string name]
        {
            get { var h = Api.GraphOperationByName(Handle, name); return h == IntPtr.Zero ? null : new TFOperation(h); }
        }

        /// <summary>Resolve "x" or "x:0" to an output; throws naming the tensor when absent.</summary>
        public TFOutput Output(string tensorName)
        {
            var parts = tensorName.Split(':');
            var op = this[parts[0]];
            if (op == null) throw new TFException(TFCode.NotFound, "tensor '" + tensorName + "' is not in the graph");
            return op[parts.Length > 1 ? int.Parse(parts[1]) : 0];
        }

        public TFDataType GetDataType(TFOutput output) { return (TFDataType)Api.OperationOutputType(output); }

        /// <summary>Static shape (-1 for unknown dimensions); null when the rank is unknown.</summary>
        public long[] GetShape(TFOutput output)
        {
            using (var status = new TFStatus())
            {
                int n = Api.GraphGetTensorNumDims(Handle, output, status.Handle);
                status.Check();
                if (n < 0) return null;
                var dims = new long[n];
                Api.GraphGetTensorShape(Handle, output, dims, n, status.Handle);
                status.Check();
                return dims;
            }
        }
    }

    public class TFTensor : TFDisposable
    {
        internal TFTensor(IntPtr handle) { Handle = handle; }
        protected override void NativeDispose(IntPtr h) { Api.DeleteTensor(h); }

        static readonly Dictionary<Type, TFDataType> dtypeOf = new Dictionary<Type, TFDataType> {
            { typeof(float), TFDataType.Float }, { typeof(double), TFDataType.Double }, { typeof(int), TFDataType.Int32 },
            { typeof(long), TFDataType.Int64 }, { typeof(byte), TFDataType.UInt8 }, { typeof(bool), TFDataType.Bool },
            { typeof(short), TFDataType.Int16 }, { typeof(sbyte), TFDataType.Int8 } };

        public static Type ElementType(TFDataType dtype)
        {
            foreach (var kv in dtypeOf) if (kv.Value == dtype) return kv.Key;
            throw new TFException(TFCode.Unimplemented, "dtype " + dtype + " is not supported by this binding");
        }

        // bool marshals as a 4-byte BOOL, but TF and Buffer.BlockCopy store it in one byte.
        public static int ElementSize(TFDataType dtype) { return dtype == TFDataType.Bool ? 1 : Marshal.SizeOf(ElementType(dtype)); }

        /// <summary>A tensor holding a copy of <paramref name="array"/> (any rank; its shape is the array's).</summary>
        public TFTensor(Array array) : this(ShapeOf(array), array) { }

        /// <summary>A tensor of <paramref name="shape"/> from the elements of <paramref name="data"/> in row-major order.</summary>
        public TFTensor(long[] shape, Array data)
        {
            TFDataType dtype;
            if (!dtypeOf.TryGetValue(data.GetType().GetElementType(), out dtype))
                throw new TFException(TFCode.InvalidArgument, "arrays of " + data.GetType().GetElementType().Name + " are not supported");
            long count = shape.Aggregate(1L, (a, b) => a * b);
            if (count != data.Length)
                throw new TFException(TFCode.InvalidArgument, "shape [" + string.Join(",", shape) + "] needs " + count + " elements, got " + data.Length);
            int size = ElementSize(dtype);
            Handle = Api.Allocate((int)dtype, shape, shape.Length, (UIntPtr)(count * size));
            var bytes = new byte[count * size];
            Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
            Marshal.Copy(bytes, 0, Api.TensorData(Handle), bytes.Length);
        }

        public TFTensor(float value) : this(new long[0], new[] { value }) { }
        public TFTensor(double value) : this(new long[0], new[] { value }) { }
        public TFTensor(int value) : this(new long[0], new[] { value }) { }
        public TFTensor(long value) : this(new long[0], new[] { value }) { }
        public TFTensor(bool value) : this(new long[0], new[] { value }) { }

        static long[] ShapeOf(Array a)
        {
            var shape = new long[a.Rank];
            for (int i = 0; i < a.Rank; i++) shape[i] = a.GetLength(i);
            return shape;
        }

        public TFDataType TensorType { get { return (TFDataType)Api.TensorType(Handle); } }

        public long[] Shape
        {
            get
            {
                var shape = new long[Api.NumDimsOfTensor(Handle)];
                for (int i = 0; i < shape.Length; i++) shape[i] = Api.Dim(Handle, i);
                return shape;
            }
        }

        /// <summary>The elements in row-major order, as a flat array of the element type.</summary>
        public Array GetFlatValue()
        {
            var type = ElementType(TensorType);
            long count = Shape.Aggregate(1L, (a, b) => a * b);
            var flat = Array.CreateInstance(type, count);
            var bytes = new byte[count * ElementSize(TensorType)];
            Marshal.Copy(Api.TensorData(Handle), bytes, 0, bytes.Length);
            Buffer.BlockCopy(bytes, 0, flat, 0, bytes.Length);
            return flat;
        }

        /// <summary>The value as an array of the tensor's rank (float[,] for a float matrix), or the scalar itself.</summary>
        public object GetValue()
        {
            var flat = GetFlatValue();
            var shape = Shape;
            if (shape.Length == 0) return flat.GetValue(0);
            var result = Array.CreateInstance(flat.GetType().GetElementType(), shape.Select(d => (int)d).ToArray());
            Buffer.BlockCopy(flat, 0, result, 0, Buffer.ByteLength(flat));
            return result;
        }
    }

    public class TFSession : TFDisposable
    {
        public TFGraph Graph { get; private set; }

        public TFSession(TFGraph graph)
        {
            Graph = graph;
            var options = Api.NewSessionOptions();
            try
            {
                using (var status = new TFStatus())
                {
                    Handle = Api.NewSession(graph.Handle, options, status.Handle);
                    status.Check();
                }
            }
            finally { Api.DeleteSessionOptions(options); }
        }

        protected override void NativeDispose(IntPtr h)
        {
            using (var status = new TFStatus())
            {
                Api.CloseSession(h, status.Handle);
                Api.DeleteSession(h, status.Handle);
            }
        }

        public Runner GetRunner() { return new Runner(this); }

        public class Runner
        {
            readonly TFSession session;
            readonly List<TFOutput> inputs = new List<TFOutput>(), outputs = new List<TFOutput>();
            readonly List<TFTensor> values = new List<TFTensor>();
            internal Runner(TFSession s) { session = s; }

            public Runner AddInput(TFOutput input, TFTensor value) { inputs.Add(input); values.Add(value); return this; }
            public Runner AddInput(string name, TFTensor value) { return AddInput(session.Graph.Output(name), value); }
            public Runner Fetch(params TFOutput[] outs) { outputs.AddRange(outs); return this; }
            public Runner Fetch(string name) { outputs.Add(session.Graph.Output(name)); return this; }

            public TFTensor[] Run()
            {
                var results = new IntPtr[outputs.Count];
                using (var status = new TFStatus())
                {
                    Api.Run(session.Handle, IntPtr.Zero, inputs.ToArray(), values.Select(v => v.Handle).ToArray(), inputs.Count,
                            outputs.ToArray(), results, outputs.Count, null, 0, IntPtr.Zero, status.Handle);
                    status.Check();
                }
                return results.Select(h => new TFTensor(h)).ToArray();
            }
        }
    }
}
