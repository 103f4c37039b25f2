// tffreeze's built-in binding of the TensorFlow C API: a subset of TensorFlowSharp's
// public API, signature for signature (the namespace aside), so that code written
// against it builds unchanged against the TensorFlowSharp package and the reverse
// holds for everything it uses. tests/e2e/test_csharp_surface.py fails when a public
// member here has no TensorFlowSharp counterpart with the same signature.
//
// What differs is how the native library is found: TensorFlowSharp P/Invokes
// "libtensorflow"; this binding dlopens, at first use, the file or folder named by
// $TFFREEZE_LIBTENSORFLOW (else $TFFREEZE_DEFAULT_LIB), so one build runs on the TF 2.x
// C API inside the TensorFlow pip wheel (libtensorflow_framework.so.2 +
// libtensorflow_cc.so.2), on libtensorflow.so, and on TF 1.15's
// _pywrap_tensorflow_internal.so (the runtime TensorFlowSharp ships).
//
// Semantics follow TensorFlowSharp's: methods taking an optional TFStatus throw a
// TFException with TensorFlow's message when none is given, and leave the error in the
// status when one is; a name TFGraph does not hold gives null. Built with
// -define:TENSORFLOWSHARP_SURFACE, this file is the reference assembly "TensorFlowSharp"
// (namespace TensorFlow) that the helpers' TensorFlowSharp build compiles against.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;

#if TENSORFLOWSHARP_SURFACE
namespace TensorFlow
#else
namespace TfFreeze.TensorFlow
#endif
{
    public enum TFDataType : uint
    {
        Unknown = 0, Float = 1, Double = 2, Int32 = 3, UInt8 = 4, Int16 = 5, Int8 = 6, String = 7,
        Int64 = 9, Bool = 10, UInt16 = 17
    }

    public enum TFCode : uint
    {
        Ok = 0, Cancelled = 1, Unknown = 2, InvalidArgument = 3, DeadlineExceeded = 4, NotFound = 5,
        AlreadyExists = 6, PermissionDenied = 7, Unauthenticated = 16, ResourceExhausted = 8,
        FailedPrecondition = 9, Aborted = 10, OutOfRange = 11, Unimplemented = 12, Internal = 13,
        Unavailable = 14, DataLoss = 15
    }

    public class TFException : Exception
    {
        public TFException(string message) : base(message) { }
        internal TFException(string message, string kind) : base(message) { Kind = kind; }

        /// <summary>For a library that could not be found or loaded, the error kind the clients tag it
        /// with (NOT_FOUND, FAILED_PRECONDITION, as tffreeze-cpp does); null for TensorFlow's own errors.
        /// Internal: the public surface is TensorFlowSharp's, no more (tffreeze-cs reads it by reflection).</summary>
        internal string Kind { get; private set; }
    }

    /// <summary>The loaded library's facts (TensorFlowSharp's TFCore).</summary>
    public static class TFCore
    {
        public static string Version { get { return Marshal.PtrToStringAnsi(Native.Call(() => Api.Version)); } }
    }

    /// <summary>Finds and binds the C API on first use (see the file's header).</summary>
    internal static class Native
    {
        const int RTLD_NOW = 2, RTLD_GLOBAL = 0x100;
        [DllImport("libdl.so.2")] static extern IntPtr dlopen(string file, int mode);
        [DllImport("libdl.so.2")] static extern IntPtr dlsym(IntPtr handle, string name);
        [DllImport("libdl.so.2")] static extern IntPtr dlerror();

        static readonly List<IntPtr> handles = new List<IntPtr>();
        static readonly object gate = new object();
        static bool loaded;

        internal static void EnsureLoaded()
        {
            lock (gate)
            {
                if (loaded) return;
                var path = Environment.GetEnvironmentVariable("TFFREEZE_LIBTENSORFLOW");
                if (string.IsNullOrEmpty(path)) path = Environment.GetEnvironmentVariable("TFFREEZE_DEFAULT_LIB");
                if (string.IsNullOrEmpty(path)) path = BesideThisCheckout();
                if (string.IsNullOrEmpty(path)) throw new TFException(
                    "no TensorFlow C library: set TFFREEZE_LIBTENSORFLOW to libtensorflow.so, a TensorFlow wheel's " +
                    "tensorflow/ folder (python -c 'import tensorflow, os; print(os.path.dirname(tensorflow.__file__))'), " +
                    "or TF 1.15's _pywrap_tensorflow_internal.so", "NOT_FOUND");
                Load(path);
                Api.Bind();
                loaded = true;
            }
        }

        /// <summary>The TensorFlow wheel of the tffreeze checkout this assembly was built in
        /// (client_csharp/bin/ -> .venv/lib/python3*/site-packages/tensorflow), as the tffreeze-cs launcher
        /// finds it; null elsewhere (a copied assembly names its library by the variables).</summary>
        static string BesideThisCheckout()
        {
            try
            {
                var bin = Path.GetDirectoryName(typeof(Native).Assembly.Location);
                var lib = Path.Combine(Path.GetFullPath(Path.Combine(bin, "..", "..")), ".venv", "lib");
                if (!Directory.Exists(lib)) return null;
                return Directory.GetDirectories(lib, "python3*").OrderBy(d => d, StringComparer.Ordinal)
                    .Select(d => Path.Combine(d, "site-packages", "tensorflow")).FirstOrDefault(Directory.Exists);
            }
            catch (Exception) { return null; }  // (no location: loaded from bytes)
        }

        static void Load(string path)
        {
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
            if (files.Count == 0) throw new TFException("no TensorFlow C library at " + path +
                " (expected libtensorflow_cc.so.2, libtensorflow.so or _pywrap_tensorflow_internal.so)", "NOT_FOUND");
            foreach (var f in files)
            {
                var h = dlopen(f, RTLD_NOW | RTLD_GLOBAL);
                if (h == IntPtr.Zero)
                    throw new TFException("cannot load " + f + ": " + Marshal.PtrToStringAnsi(dlerror()) +
                        (f.Contains("_pywrap") ? " (TF 1.15's library needs libpython3.7m preloaded: LD_PRELOAD)" : ""),
                        "FAILED_PRECONDITION");
                handles.Add(h);
            }
        }

        /// <summary>Call a C API constructor, loading the library first (a missing library is a TFException).</summary>
        internal static IntPtr Call(Func<Api.Ptr0> fn) { EnsureLoaded(); return fn()(); }

        internal static T Fn<T>(string name) where T : class
        {
            foreach (var h in handles)
            {
                var p = dlsym(h, name);
                if (p != IntPtr.Zero) return Marshal.GetDelegateForFunctionPointer(p, typeof(T)) as T;
            }
            throw new TFException("the TensorFlow library has no " + name, "FAILED_PRECONDITION");
        }
    }

    internal static class Api
    {
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr Ptr0();
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void Void1(IntPtr a);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr Ptr1(IntPtr a);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int Int1(IntPtr a);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate long Long2(IntPtr a, int i);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate UIntPtr Size1(IntPtr a);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void SetStatus(IntPtr status, TFCode code, string message);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr BufferFromString(byte[] data, UIntPtr len);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void SetPrefix(IntPtr opts, string prefix);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void ImportGraphDef(IntPtr graph, IntPtr buffer, IntPtr opts, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr OperationByName(IntPtr graph, string name);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr NextOperation(IntPtr graph, ref UIntPtr pos);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate TFDataType OutputType(TFOutput output);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int NumDims(IntPtr graph, TFOutput output, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void GetShape(IntPtr graph, TFOutput output, long[] dims, int n, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr NewSessionFn(IntPtr graph, IntPtr opts, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void Void2(IntPtr a, IntPtr b);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void SetConfigFn(IntPtr opts, IntPtr proto, UIntPtr len, IntPtr status);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate IntPtr AllocateTensor(TFDataType dtype, long[] dims, int ndims, UIntPtr len);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate void SessionRun(IntPtr session, IntPtr runOptions,
            TFOutput[] inputs, IntPtr[] inputValues, int ninputs, TFOutput[] outputs, IntPtr[] outputValues, int noutputs,
            IntPtr[] targets, int ntargets, IntPtr runMetadata, IntPtr status);

        public static Ptr0 NewStatus, NewGraph, NewImportGraphDefOptions, NewSessionOptions, Version;
        public static Void1 DeleteStatus, DeleteGraph, DeleteImportGraphDefOptions, DeleteSessionOptions, DeleteBuffer, DeleteTensor;
        public static Int1 GetCode, TensorType, NumDimsOfTensor, OperationNumOutputs;
        public static Ptr1 Message, TensorData, OperationName, OperationOpType;
        public static Long2 Dim;
        public static Size1 TensorByteSize;
        public static SetStatus SetStatusCode;
        public static BufferFromString NewBufferFromString;
        public static SetPrefix ImportGraphDefOptionsSetPrefix;
        public static ImportGraphDef GraphImportGraphDef;
        public static OperationByName GraphOperationByName;
        public static NextOperation GraphNextOperation;
        public static OutputType OperationOutputType;
        public static NumDims GraphGetTensorNumDims;
        public static GetShape GraphGetTensorShape;
        public static NewSessionFn NewSession;
        public static SetConfigFn SetConfig;
        public static Void2 CloseSession, DeleteSession;
        public static AllocateTensor Allocate;
        public static SessionRun Run;

        public static void Bind()
        {
            NewStatus = Native.Fn<Ptr0>("TF_NewStatus"); DeleteStatus = Native.Fn<Void1>("TF_DeleteStatus");
            GetCode = Native.Fn<Int1>("TF_GetCode"); Message = Native.Fn<Ptr1>("TF_Message");
            SetStatusCode = Native.Fn<SetStatus>("TF_SetStatus");
            Version = Native.Fn<Ptr0>("TF_Version");
            NewGraph = Native.Fn<Ptr0>("TF_NewGraph"); DeleteGraph = Native.Fn<Void1>("TF_DeleteGraph");
            NewImportGraphDefOptions = Native.Fn<Ptr0>("TF_NewImportGraphDefOptions");
            DeleteImportGraphDefOptions = Native.Fn<Void1>("TF_DeleteImportGraphDefOptions");
            ImportGraphDefOptionsSetPrefix = Native.Fn<SetPrefix>("TF_ImportGraphDefOptionsSetPrefix");
            NewBufferFromString = Native.Fn<BufferFromString>("TF_NewBufferFromString");
            DeleteBuffer = Native.Fn<Void1>("TF_DeleteBuffer");
            GraphImportGraphDef = Native.Fn<ImportGraphDef>("TF_GraphImportGraphDef");
            GraphOperationByName = Native.Fn<OperationByName>("TF_GraphOperationByName");
            GraphNextOperation = Native.Fn<NextOperation>("TF_GraphNextOperation");
            OperationNumOutputs = Native.Fn<Int1>("TF_OperationNumOutputs");
            OperationName = Native.Fn<Ptr1>("TF_OperationName"); OperationOpType = Native.Fn<Ptr1>("TF_OperationOpType");
            OperationOutputType = Native.Fn<OutputType>("TF_OperationOutputType");
            GraphGetTensorNumDims = Native.Fn<NumDims>("TF_GraphGetTensorNumDims");
            GraphGetTensorShape = Native.Fn<GetShape>("TF_GraphGetTensorShape");
            NewSessionOptions = Native.Fn<Ptr0>("TF_NewSessionOptions"); DeleteSessionOptions = Native.Fn<Void1>("TF_DeleteSessionOptions");
            NewSession = Native.Fn<NewSessionFn>("TF_NewSession");
            SetConfig = Native.Fn<SetConfigFn>("TF_SetConfig");
            CloseSession = Native.Fn<Void2>("TF_CloseSession"); DeleteSession = Native.Fn<Void2>("TF_DeleteSession");
            Allocate = Native.Fn<AllocateTensor>("TF_AllocateTensor"); DeleteTensor = Native.Fn<Void1>("TF_DeleteTensor");
            TensorData = Native.Fn<Ptr1>("TF_TensorData"); TensorByteSize = Native.Fn<Size1>("TF_TensorByteSize");
            TensorType = Native.Fn<Int1>("TF_TensorType"); NumDimsOfTensor = Native.Fn<Int1>("TF_NumDims");
            Dim = Native.Fn<Long2>("TF_Dim");
            Run = Native.Fn<SessionRun>("TF_SessionRun");
        }
    }

    public abstract class TFDisposable : IDisposable
    {
        internal IntPtr handle;

        public TFDisposable() { }
        public TFDisposable(IntPtr handle) { this.handle = handle; }

        public IntPtr Handle
        {
            get { return handle; }
            set { if (handle != IntPtr.Zero) Dispose(); handle = value; }
        }

        internal abstract void NativeDispose(IntPtr handle);

        public void Dispose() { Dispose(true); GC.SuppressFinalize(this); }

        ~TFDisposable() { Dispose(false); }

        public virtual void Dispose(bool disposing)
        {
            if (disposing)
            {
                if (handle != IntPtr.Zero) NativeDispose(handle);
                handle = IntPtr.Zero;
            }
        }

        internal void ThrowIfDisposed()
        {
            if (handle == IntPtr.Zero) throw new ObjectDisposedException(GetType().Name);
        }
    }

    /// <summary>Releases its native object also when finalized.</summary>
    public abstract class TFDisposableThreadSafe : TFDisposable
    {
        public TFDisposableThreadSafe(IntPtr handle) : base(handle) { }
        public TFDisposableThreadSafe() { }

        public override void Dispose(bool disposing)
        {
            if (handle != IntPtr.Zero) NativeDispose(handle);
            handle = IntPtr.Zero;
        }
    }

    public class TFStatus : TFDisposable
    {
        public TFStatus() : base(Native.Call(() => Api.NewStatus)) { }
        internal override void NativeDispose(IntPtr h) { Api.DeleteStatus(h); }

        public void SetStatusCode(TFCode code, string msg) { Api.SetStatusCode(Handle, code, msg); }

        public TFCode StatusCode
        {
            get { ThrowIfDisposed(); return (TFCode)Api.GetCode(Handle); }
        }

        public string StatusMessage { get { return Marshal.PtrToStringAnsi(Api.Message(Handle)); } }
        public bool Ok { get { return StatusCode == TFCode.Ok; } }
        public bool Error { get { return StatusCode != TFCode.Ok; } }

        /// <summary>Throw a TFException with TensorFlow's message unless the status is OK.</summary>
        public void Raise() { if (Error) throw new TFException(StatusMessage); }

        public override string ToString()
        {
            ThrowIfDisposed();
            return string.Format("[TFStatus: StatusCode={0}, StatusMessage={1}]", StatusCode, StatusMessage);
        }

        // TensorFlowSharp's idiom: a caller's status receives the error; without one, it is thrown.
        internal static TFStatus Setup(TFStatus incoming) { return incoming ?? new TFStatus(); }

        internal bool CheckMaybeRaise(TFStatus incoming, bool last = true)
        {
            if (incoming != null) return Ok;
            var error = Error ? new TFException(StatusMessage) : null;
            if (last || error != null) Dispose();
            if (error != null) throw error;
            return true;
        }
    }

    public class TFImportGraphDefOptions : TFDisposable
    {
        public TFImportGraphDefOptions() : base(Native.Call(() => Api.NewImportGraphDefOptions)) { }
        internal override void NativeDispose(IntPtr h) { Api.DeleteImportGraphDefOptions(h); }
        public void SetPrefix(string prefix) { ThrowIfDisposed(); Api.ImportGraphDefOptionsSetPrefix(Handle, prefix); }
    }

    // TensorFlowSharp's TFSessionOptions (SetConfig): a session created with a serialized ConfigProto,
    // e.g. a manifest's session_config.
    public class TFSessionOptions : TFDisposable
    {
        public TFSessionOptions() : base(Native.Call(() => Api.NewSessionOptions)) { }
        internal override void NativeDispose(IntPtr h) { Api.DeleteSessionOptions(h); }

        public void SetConfig(IntPtr protoData, int length, TFStatus status = null)
        {
            ThrowIfDisposed();
            var cstatus = TFStatus.Setup(status);
            Api.SetConfig(Handle, protoData, (UIntPtr)length, cstatus.Handle);
            cstatus.CheckMaybeRaise(status);
        }
    }

    public class TFOperation
    {
        readonly IntPtr handle;
        internal readonly TFGraph graph; // keeps the graph alive while its operations are
        internal TFOperation(TFGraph graph, IntPtr handle) { this.graph = graph; this.handle = handle; }

        public IntPtr Handle { get { return handle; } }
        public string Name { get { return handle == IntPtr.Zero ? "<ObjectDisposed>" : Marshal.PtrToStringAnsi(Api.OperationName(handle)); } }
        public string OpType { get { return handle == IntPtr.Zero ? "<ObjectDisposedException>" : Marshal.PtrToStringAnsi(Api.OperationOpType(handle)); } }
        public int NumOutputs { get { return handle == IntPtr.Zero ? -1 : Api.OperationNumOutputs(handle); } }
        public TFOutput this[int idx] { get { return new TFOutput(this, idx); } }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct TFOutput
    {
        IntPtr LLOperation;
        public int Index;

        public TFOutput(TFOperation operation, int index = 0)
        {
            if (operation == null) throw new ArgumentNullException("operation");
            LLOperation = operation.Handle;
            Index = index;
        }

        public TFDataType OutputType { get { return LLOperation == IntPtr.Zero ? TFDataType.Unknown : Api.OperationOutputType(this); } }
        public TFOperation Operation { get { return new TFOperation(null, LLOperation); } }

        public override string ToString()
        {
            return string.Format("[{3} Index={1} Operation={2} (0x{0:X})]", (long)LLOperation, Index, Operation, OutputType);
        }
    }

    /// <summary>A tensor's shape: dimensions (-1 unknown), or an unknown rank.</summary>
    public class TFShape
    {
        readonly long[] dims;

        public static TFShape Unknown { get { return new TFShape(null); } }
        public static TFShape Scalar { get { return new TFShape(new long[0]); } }

        public TFShape(params long[] args) { dims = args; }

        public int GetLength(int dimension) { return dims == null ? -1 : (int)dims[dimension]; }
        public int NumDimensions { get { return dims == null ? -1 : dims.Length; } }
        public bool IsFullySpecified { get { return dims != null && dims.All(d => d != -1); } }
        public long[] ToArray() { return dims == null ? null : (long[])dims.Clone(); }

        public int[] ToIntArray()
        {
            if (dims == null) return null;
            return dims.Select(d => checked((int)d)).ToArray();
        }

        public long this[int idx] { get { return dims[idx]; } }

        public override string ToString()
        {
            return dims == null ? "unknown" : "[" + string.Join(", ", dims.Select(x => x == -1 ? "?" : x.ToString())) + "]";
        }
    }

    public class TFGraph : TFDisposableThreadSafe
    {
        public TFGraph() : base(Native.Call(() => Api.NewGraph)) { }
        internal override void NativeDispose(IntPtr h) { Api.DeleteGraph(h); }

        public void Import(byte[] buffer, string prefix = "", TFStatus status = null)
        {
            ThrowIfDisposed();
            if (buffer == null) throw new ArgumentNullException("buffer");
            if (prefix == null) throw new ArgumentNullException("prefix");
            using (var options = new TFImportGraphDefOptions())
            {
                options.SetPrefix(prefix);
                Import(buffer, options, status);
            }
        }

        public void Import(byte[] buffer, TFImportGraphDefOptions options, TFStatus status = null)
        {
            ThrowIfDisposed();
            if (buffer == null) throw new ArgumentNullException("buffer");
            if (options == null) throw new ArgumentNullException("options");
            var cstatus = TFStatus.Setup(status);
            var native = Api.NewBufferFromString(buffer, (UIntPtr)buffer.Length);
            try { Api.GraphImportGraphDef(Handle, native, options.Handle, cstatus.Handle); }
            finally { Api.DeleteBuffer(native); }
            cstatus.CheckMaybeRaise(status);
        }

        /// <summary>The operation named <paramref name="name"/>, or null.</summary>
        public TFOperation this[string name]
        {
            get
            {
                ThrowIfDisposed();
                var h = Api.GraphOperationByName(Handle, name);
                return h == IntPtr.Zero ? null : new TFOperation(this, h);
            }
        }

        /// <summary>Every operation of the graph, in the order it holds them.</summary>
        public IEnumerable<TFOperation> GetEnumerator()
        {
            ThrowIfDisposed();
            var pos = UIntPtr.Zero;
            IntPtr h;
            while ((h = Api.GraphNextOperation(Handle, ref pos)) != IntPtr.Zero) yield return new TFOperation(this, h);
        }

        public int GetTensorNumDims(TFOutput output, TFStatus status = null)
        {
            ThrowIfDisposed();
            var cstatus = TFStatus.Setup(status);
            var n = Api.GraphGetTensorNumDims(Handle, output, cstatus.Handle);
            cstatus.CheckMaybeRaise(status);
            return n;
        }

        /// <summary>The static shape (-1 for unknown dimensions); TFShape.Unknown when the rank is unknown.</summary>
        public TFShape GetTensorShape(TFOutput output, TFStatus status = null)
        {
            ThrowIfDisposed();
            var cstatus = TFStatus.Setup(status);
            var n = Api.GraphGetTensorNumDims(Handle, output, cstatus.Handle);
            if (!cstatus.CheckMaybeRaise(status, false) || n == -1)
            {
                if (status == null) cstatus.Dispose();
                return TFShape.Unknown;
            }
            var dims = new long[n];
            Api.GraphGetTensorShape(Handle, output, dims, n, cstatus.Handle);
            cstatus.CheckMaybeRaise(status);
            return new TFShape(dims);
        }

        /// <summary>The static shape as an array; null for a scalar or an unknown rank (as TensorFlowSharp).</summary>
        public long[] GetShape(TFOutput output, TFStatus status = null)
        {
            var shape = GetTensorShape(output, status);
            return shape.NumDimensions <= 0 ? null : shape.ToArray();
        }
    }

    public class TFTensor : TFDisposableThreadSafe
    {
        internal TFTensor(IntPtr handle) : base(handle) { }
        internal override void NativeDispose(IntPtr h) { Api.DeleteTensor(h); }

        // The element types this binding stores, with their sizes in a tensor (bool is one byte).
        static readonly Dictionary<Type, Tuple<TFDataType, int>> types = new Dictionary<Type, Tuple<TFDataType, int>> {
            { typeof(float), Tuple.Create(TFDataType.Float, 4) }, { typeof(double), Tuple.Create(TFDataType.Double, 8) },
            { typeof(int), Tuple.Create(TFDataType.Int32, 4) }, { typeof(long), Tuple.Create(TFDataType.Int64, 8) },
            { typeof(byte), Tuple.Create(TFDataType.UInt8, 1) }, { typeof(sbyte), Tuple.Create(TFDataType.Int8, 1) },
            { typeof(short), Tuple.Create(TFDataType.Int16, 2) }, { typeof(ushort), Tuple.Create(TFDataType.UInt16, 2) },
            { typeof(bool), Tuple.Create(TFDataType.Bool, 1) } };

        static Tuple<TFDataType, int> TypeInfo(Type t)
        {
            Tuple<TFDataType, int> info;
            if (t == null || !types.TryGetValue(t, out info)) throw new ArgumentException("The data type " + t + " is not supported");
            return info;
        }

        /// <summary>A new tensor of <paramref name="dims"/> holding a copy of <paramref name="count"/>
        /// elements of <paramref name="data"/> from <paramref name="start"/> (row-major).</summary>
        static IntPtr Copy(TFDataType dtype, long[] dims, Array data, int start, int count, int size)
        {
            if (data == null) throw new ArgumentNullException("data");
            if (start < 0 || count < 0 || start > data.Length - count) throw new ArgumentException("start + count > Array size");
            dims = dims ?? new long[0];
            Native.EnsureLoaded();
            var handle = Api.Allocate(dtype, dims, dims.Length, (UIntPtr)((long)count * size));
            if (count == 0) return handle;
            var pinned = GCHandle.Alloc(data, GCHandleType.Pinned);
            try
            {
                var bytes = new byte[(long)count * size];
                Marshal.Copy(pinned.AddrOfPinnedObject() + start * size, bytes, 0, bytes.Length);
                Marshal.Copy(bytes, 0, Api.TensorData(handle), bytes.Length);
            }
            finally { pinned.Free(); }
            return handle;
        }

        static IntPtr Scalar(Array one) { var info = TypeInfo(one.GetType().GetElementType()); return Copy(info.Item1, new long[0], one, 0, 1, info.Item2); }
        static IntPtr Vector(Array data) { var info = TypeInfo(data.GetType().GetElementType()); return Copy(info.Item1, new long[] { data.Length }, data, 0, data.Length, info.Item2); }

        static IntPtr FromArray(Array array)
        {
            if (array == null) throw new ArgumentNullException("array");
            var t = array.GetType().GetElementType();
            if (t.IsArray) throw new ArgumentException("jagged arrays are not supported by this binding; pass a multidimensional array");
            var info = TypeInfo(t);
            var dims = new long[array.Rank];
            for (int i = 0; i < dims.Length; i++) dims[i] = array.GetLength(i);
            return Copy(info.Item1, dims, array, 0, array.Length, info.Item2);
        }

        static long[] Dims(TFShape shape)
        {
            if (shape == null) throw new ArgumentNullException("shape");
            return shape.ToArray();
        }

        public static TFTensor FromBuffer(TFShape shape, byte[] data, int start, int count) { return new TFTensor(Copy(TFDataType.UInt8, Dims(shape), data, start, count, 1)); }
        public static TFTensor FromBuffer(TFShape shape, short[] data, int start, int count) { return new TFTensor(Copy(TFDataType.Int16, Dims(shape), data, start, count, 2)); }
        public static TFTensor FromBuffer(TFShape shape, ushort[] data, int start, int count) { return new TFTensor(Copy(TFDataType.UInt16, Dims(shape), data, start, count, 2)); }
        public static TFTensor FromBuffer(TFShape shape, int[] data, int start, int count) { return new TFTensor(Copy(TFDataType.Int32, Dims(shape), data, start, count, 4)); }
        public static TFTensor FromBuffer(TFShape shape, float[] data, int start, int count) { return new TFTensor(Copy(TFDataType.Float, Dims(shape), data, start, count, 4)); }
        public static TFTensor FromBuffer(TFShape shape, double[] data, int start, int count) { return new TFTensor(Copy(TFDataType.Double, Dims(shape), data, start, count, 8)); }
        public static TFTensor FromBuffer(TFShape shape, long[] data, int start, int count) { return new TFTensor(Copy(TFDataType.Int64, Dims(shape), data, start, count, 8)); }

        /// <summary>A tensor holding a copy of <paramref name="array"/>, of its rank and shape.</summary>
        public TFTensor(Array array) : base(FromArray(array)) { }

        public TFTensor(bool[] data) : base(Vector(data)) { }
        public TFTensor(sbyte[] data) : base(Vector(data)) { }
        public TFTensor(byte[] data) : base(Vector(data)) { }
        public TFTensor(short[] data) : base(Vector(data)) { }
        public TFTensor(ushort[] data) : base(Vector(data)) { }
        public TFTensor(int[] data) : base(Vector(data)) { }
        public TFTensor(float[] data) : base(Vector(data)) { }
        public TFTensor(double[] data) : base(Vector(data)) { }
        public TFTensor(long[] data) : base(Vector(data)) { }

        public TFTensor(int value) : base(Scalar(new[] { value })) { }
        public TFTensor(bool value) : base(Scalar(new[] { value })) { }
        public TFTensor(sbyte value) : base(Scalar(new[] { value })) { }
        public TFTensor(short value) : base(Scalar(new[] { value })) { }
        public TFTensor(ushort value) : base(Scalar(new[] { value })) { }
        public TFTensor(byte value) : base(Scalar(new[] { value })) { }
        public TFTensor(float value) : base(Scalar(new[] { value })) { }
        public TFTensor(double value) : base(Scalar(new[] { value })) { }
        public TFTensor(long value) : base(Scalar(new[] { value })) { }

        public TFDataType TensorType { get { return (TFDataType)Api.TensorType(Handle); } }
        public int NumDims { get { return Api.NumDimsOfTensor(Handle); } }
        public long GetTensorDimension(int dimIndex) { return Api.Dim(Handle, dimIndex); }
        public UIntPtr TensorByteSize { get { return Api.TensorByteSize(Handle); } }
        public IntPtr Data { get { return Api.TensorData(Handle); } }

        public long[] Shape
        {
            get
            {
                var shape = new long[NumDims];
                for (int i = 0; i < shape.Length; i++) shape[i] = GetTensorDimension(i);
                return shape;
            }
        }

        public static Type TypeFromTensorType(TFDataType type)
        {
            foreach (var kv in types) if (kv.Value.Item1 == type) return kv.Key;
            return null;
        }

        public static TFDataType TensorTypeFromType(Type type)
        {
            Tuple<TFDataType, int> info;
            if (type != null && types.TryGetValue(type, out info)) return info.Item1;
            throw new ArgumentOutOfRangeException("type", "The given type could not be mapped to an existing TFDataType.");
        }

        /// <summary>The value: the scalar itself for rank 0, else an array of the tensor's rank
        /// (T[] for a vector, T[,] for a matrix), or with <paramref name="jagged"/> arrays of arrays.</summary>
        public object GetValue(bool jagged = false)
        {
            var t = TypeFromTensorType(TensorType);
            if (t == null) return null;
            var shape = Shape;
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var flat = Array.CreateInstance(t, count);
            if (count > 0)
            {
                var bytes = new byte[count * TypeInfo(t).Item2];
                Marshal.Copy(Data, bytes, 0, bytes.Length);
                Buffer.BlockCopy(bytes, 0, flat, 0, bytes.Length);
            }
            if (shape.Length == 0) return flat.GetValue(0);
            if (shape.Length == 1) return flat;
            if (jagged) return Jagged(t, flat, shape, 0, 0);
            var result = Array.CreateInstance(t, shape.Select(d => (int)d).ToArray());
            if (count > 0) Buffer.BlockCopy(flat, 0, result, 0, Buffer.ByteLength(flat));
            return result;
        }

        static Array Jagged(Type t, Array flat, long[] shape, int axis, long offset)
        {
            int n = (int)shape[axis];
            if (axis == shape.Length - 1)
            {
                var row = Array.CreateInstance(t, n);
                if (n > 0) Array.Copy(flat, offset, row, 0, n);
                return row;
            }
            long stride = 1;
            for (int i = axis + 1; i < shape.Length; i++) stride *= shape[i];
            var rowType = t;
            for (int i = axis + 1; i < shape.Length; i++) rowType = rowType.MakeArrayType();
            var result = Array.CreateInstance(rowType, n);
            for (int i = 0; i < n; i++) result.SetValue(Jagged(t, flat, shape, axis + 1, offset + i * stride), i);
            return result;
        }
    }

    public class TFSession : TFDisposableThreadSafe
    {
        public TFGraph Graph { get; private set; }

        public TFSession(TFGraph graph, TFSessionOptions sessionOptions, TFStatus status = null) : base(IntPtr.Zero)
        {
            if (graph == null) throw new ArgumentNullException("graph");
            if (sessionOptions == null) throw new ArgumentNullException("sessionOptions");
            Graph = graph;
            var cstatus = TFStatus.Setup(status);
            var h = Api.NewSession(graph.Handle, sessionOptions.Handle, cstatus.Handle);
            cstatus.CheckMaybeRaise(status);
            Handle = h;
        }

        public TFSession(TFGraph graph, TFStatus status = null) : base(IntPtr.Zero)
        {
            if (graph == null) throw new ArgumentNullException("graph");
            Graph = graph;
            var cstatus = TFStatus.Setup(status);
            var options = Api.NewSessionOptions();
            IntPtr h;
            try { h = Api.NewSession(graph.Handle, options, cstatus.Handle); }
            finally { Api.DeleteSessionOptions(options); }
            cstatus.CheckMaybeRaise(status);
            Handle = h;
        }

        internal override void NativeDispose(IntPtr h)
        {
            using (var s = new TFStatus()) Api.DeleteSession(h, s.Handle);
        }

        public void CloseSession(TFStatus status = null)
        {
            ThrowIfDisposed();
            var cstatus = TFStatus.Setup(status);
            Api.CloseSession(Handle, cstatus.Handle);
            cstatus.CheckMaybeRaise(status);
        }

        public void DeleteSession(TFStatus status = null)
        {
            ThrowIfDisposed();
            var cstatus = TFStatus.Setup(status);
            Api.DeleteSession(Handle, cstatus.Handle);
            cstatus.CheckMaybeRaise(status);
        }

        public Runner GetRunner() { return new Runner(this); }

        internal TFTensor[] Run(TFOutput[] inputs, TFTensor[] values, TFOutput[] outputs, TFOperation[] targets, TFStatus status)
        {
            ThrowIfDisposed();
            var cstatus = TFStatus.Setup(status);
            var results = new IntPtr[outputs.Length];
            var targetHandles = targets.Select(t => t.Handle).ToArray();
            Api.Run(Handle, IntPtr.Zero, inputs, values.Select(v => v.Handle).ToArray(), inputs.Length,
                    outputs, results, outputs.Length, targetHandles, targetHandles.Length, IntPtr.Zero, cstatus.Handle);
            GC.KeepAlive(values);
            cstatus.CheckMaybeRaise(status);
            return results.Select(h => new TFTensor(h)).ToArray();
        }

        public class Runner
        {
            readonly TFSession session;
            readonly List<TFOutput> inputs = new List<TFOutput>(), outputs = new List<TFOutput>();
            readonly List<TFTensor> inputValues = new List<TFTensor>();
            readonly List<TFOperation> targets = new List<TFOperation>();
            internal Runner(TFSession session) { this.session = session; }

            public Runner AddInput(TFOutput input, TFTensor value)
            {
                if (value == null) throw new ArgumentNullException("value");
                inputs.Add(input); inputValues.Add(value);
                return this;
            }

            /// <summary>"op" or "op:index"; an operation the graph lacks is an ArgumentOutOfRangeException.</summary>
            public Runner AddInput(string input, TFTensor value)
            {
                if (value == null) throw new ArgumentNullException("value");
                inputs.Add(ParseOutput(input)); inputValues.Add(value);
                return this;
            }

            public Runner AddTarget(params TFOperation[] targets) { this.targets.AddRange(targets); return this; }
            public Runner AddTarget(params string[] targetNames) { foreach (var n in targetNames) targets.Add(session.Graph[n]); return this; }

            public Runner Fetch(string operation, int index) { outputs.Add(session.Graph[operation][index]); return this; }
            public Runner Fetch(string operation) { outputs.Add(ParseOutput(operation)); return this; }
            public Runner Fetch(TFOutput output) { outputs.Add(output); return this; }
            public Runner Fetch(params TFOutput[] outputs) { this.outputs.AddRange(outputs); return this; }
            public Runner Fetch(params string[] outputs) { foreach (var o in outputs) this.outputs.Add(ParseOutput(o)); return this; }

            TFOutput ParseOutput(string operation)
            {
                var p = operation.IndexOf(':');
                int idx;
                if (p != -1 && p != operation.Length - 1 && int.TryParse(operation.Substring(p + 1), out idx))
                {
                    var named = session.Graph[operation.Substring(0, p)];
                    if (named == null) throw new ArgumentOutOfRangeException("An operation named " + operation.Substring(0, p) + " is not in this graph.");
                    return named[idx];
                }
                var op = session.Graph[operation];
                if (op == null) throw new ArgumentOutOfRangeException("An operation named " + operation + " is not in this graph.");
                return op[0];
            }

            public TFTensor[] Run(TFStatus status = null)
            {
                return session.Run(inputs.ToArray(), inputValues.ToArray(), outputs.ToArray(), targets.ToArray(), status);
            }

            public TFTensor Run(TFOutput operation, TFStatus status = null)
            {
                outputs.Clear();
                Fetch(operation);
                return Run(status)[0];
            }
        }
    }
}
