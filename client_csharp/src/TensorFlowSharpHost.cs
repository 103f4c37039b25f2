// `tffreeze-cs run --tensorflowsharp PATH/TensorFlowSharp.dll`: run a model through the real
// TensorFlowSharp assembly given. The run logic (helpers/ModelRunner.cs, the same source
// as the built-in path) is built as bin/tensorflowsharp/TfFreeze.TensorFlowSharp.dll
// against a reference assembly named TensorFlowSharp (the built-in binding compiled in
// namespace TensorFlow, a subset of TensorFlowSharp's API signature for signature); here
// that reference resolves to the user's TensorFlowSharp.dll.
using System;
using System.IO;
using System.Linq;
using System.Reflection;

namespace TfFreeze
{
    public static class TensorFlowSharpHost
    {
        /// <summary>The exception a reflective call threw, not its wrapper.</summary>
        public static Exception Unwrap(Exception e)
        {
            while ((e is TargetInvocationException || e is TypeInitializationException) && e.InnerException != null) e = e.InnerException;
            return e;
        }

        /// <summary>ModelRunner.Run's lines, computed by TensorFlowSharp at <paramref name="assemblyPath"/>.
        /// <paramref name="nativeLibrary"/>, when given, is the file TensorFlowSharp's "libtensorflow"
        /// is mapped to (a Mono dllmap beside a private copy of the assembly, removed afterwards).</summary>
        public static string[] Run(string assemblyPath, string nativeLibrary, object[] args)
        {
            if (!File.Exists(assemblyPath))
                throw new FileNotFoundException("--tensorflowsharp: no file " + assemblyPath + " (give the path of TensorFlowSharp.dll)");
            if (nativeLibrary != null && !File.Exists(nativeLibrary))
                throw new FileNotFoundException("no TensorFlow C library file at " + nativeLibrary +
                    " (with --tensorflowsharp, --libtensorflow names the library file TensorFlowSharp's \"libtensorflow\" maps to)");
            var runnerPath = Path.Combine(Path.GetDirectoryName(typeof(TensorFlowSharpHost).Assembly.Location),
                                          "tensorflowsharp", "TfFreeze.TensorFlowSharp.dll");
            if (!File.Exists(runnerPath)) throw new FileNotFoundException("missing " + runnerPath + ": run `make csharp`");
            string scratch = null;
            try
            {
                var load = Path.GetFullPath(assemblyPath);
                if (nativeLibrary != null)
                {
                    scratch = Path.Combine(Path.GetTempPath(), "tffreeze-cs-" + Guid.NewGuid().ToString("N"));
                    Directory.CreateDirectory(scratch);
                    load = Path.Combine(scratch, Path.GetFileName(assemblyPath));
                    File.Copy(assemblyPath, load);
                    File.WriteAllText(load + ".config", "<configuration><dllmap dll=\"libtensorflow\" target=\"" +
                        System.Security.SecurityElement.Escape(Path.GetFullPath(nativeLibrary)) + "\"/></configuration>\n");
                }
                var tfsharp = Assembly.LoadFrom(load);
                if (tfsharp.GetType("TensorFlow.TFGraph") == null)
                    throw new InvalidDataException(assemblyPath + " is not TensorFlowSharp (it has no TensorFlow.TFGraph)");
                ResolveEventHandler resolve = (sender, e) => new AssemblyName(e.Name).Name == "TensorFlowSharp" ? tfsharp : null;
                AppDomain.CurrentDomain.AssemblyResolve += resolve;
                try
                {
                    var runner = Assembly.LoadFrom(runnerPath).GetType("TfFreeze.ModelRunner", true);
                    return (string[])runner.GetMethod("Run").Invoke(null, args);
                }
                catch (Exception e) when (Unwrap(e) is DllNotFoundException)
                {
                    throw new FileNotFoundException("TensorFlowSharp cannot load its native library (" + Unwrap(e).Message +
                        "): give --libtensorflow FILE, or --runtime tf115");
                }
                catch (Exception e) when (Unwrap(e) is MissingMemberException || Unwrap(e) is TypeLoadException)
                {
                    throw new InvalidDataException(assemblyPath + " lacks part of TensorFlowSharp's API: " + Unwrap(e).Message);
                }
                finally { AppDomain.CurrentDomain.AssemblyResolve -= resolve; }
            }
            finally
            {
                if (scratch != null) try { Directory.Delete(scratch, true); } catch (IOException) { }
            }
        }
    }
}
