// NumPy .npy files (format 1.0/2.0, little-endian, C order) to tensors and back, for the
// dtypes of Tensors.cs. Written against the API TensorFlowSharp and tffreeze's binding
// share (-define:TENSORFLOWSHARP builds it against TensorFlowSharp).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
#if TENSORFLOWSHARP
using TensorFlow;
#else
using TfFreeze.TensorFlow;
#endif

namespace TfFreeze
{
    public static class Npy
    {
        static readonly Dictionary<string, TFDataType> byDescr = new Dictionary<string, TFDataType> {
            { "<f4", TFDataType.Float }, { "<f8", TFDataType.Double }, { "<i4", TFDataType.Int32 }, { "<i8", TFDataType.Int64 },
            { "|u1", TFDataType.UInt8 }, { "|b1", TFDataType.Bool }, { "<i2", TFDataType.Int16 }, { "|i1", TFDataType.Int8 },
            { "<u2", TFDataType.UInt16 } };

        /// <summary>Read a .npy file into a tensor.</summary>
        public static TFTensor Read(string path)
        {
            using (var r = new BinaryReader(File.OpenRead(path)))
            {
                var magic = r.ReadBytes(6);
                if (magic.Length < 6 || magic[0] != 0x93 || Encoding.ASCII.GetString(magic, 1, 5) != "NUMPY")
                    throw new InvalidDataException(path + " is not a .npy file");
                int major = r.ReadByte(); r.ReadByte();
                int headerLen = major == 1 ? r.ReadUInt16() : (int)r.ReadUInt32();
                var header = Encoding.ASCII.GetString(r.ReadBytes(headerLen));
                var descr = Regex.Match(header, @"'descr':\s*'([^']+)'").Groups[1].Value;
                if (Regex.IsMatch(header, @"'fortran_order':\s*True"))
                    throw new InvalidDataException(path + ": Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
                TFDataType dtype;
                if (!byDescr.TryGetValue(descr, out dtype))
                    throw new InvalidDataException(path + ": dtype " + descr + " is not supported (float32/64, int8/16/32/64, uint8/16, bool; " +
                                                   "text or float16 tensors: run the graph with `tffreeze run`, the Python client)");
                var shapeText = Regex.Match(header, @"'shape':\s*\(([^)]*)\)").Groups[1].Value;
                var shape = shapeText.Split(new[] { ',' }, StringSplitOptions.RemoveEmptyEntries)
                                     .Select(x => long.Parse(x.Trim())).ToArray();
                long count = Tensors.Count(shape);
                var data = Array.CreateInstance(Tensors.ElementType(dtype), count);
                var bytes = r.ReadBytes(checked((int)(count * Tensors.ElementSize(dtype))));
                if (bytes.Length != count * Tensors.ElementSize(dtype)) throw new InvalidDataException(path + " is truncated");
                Buffer.BlockCopy(bytes, 0, data, 0, bytes.Length);
                return Tensors.Create(dtype, shape, data);
            }
        }

        static string Descr(TFDataType t)
        {
            foreach (var kv in byDescr) if (kv.Value == t) return kv.Key;
            throw new InvalidDataException("cannot write dtype " + t + " to .npy");
        }

        /// <summary>Write a tensor to a .npy file (via a temporary file: an existing file is replaced only when complete).</summary>
        public static void Write(string path, TFTensor tensor)
        {
            var shape = tensor.Shape;
            var shapeText = shape.Length == 1 ? "(" + shape[0] + ",)" : "(" + string.Join(", ", shape) + ")";
            var header = "{'descr': '" + Descr(tensor.TensorType) + "', 'fortran_order': False, 'shape': " + shapeText + ", }";
            int total = 10 + header.Length + 1;
            header = header + new string(' ', (64 - total % 64) % 64) + "\n";
            var flat = Tensors.Flat(tensor);
            var bytes = new byte[Buffer.ByteLength(flat)];
            Buffer.BlockCopy(flat, 0, bytes, 0, bytes.Length);
            // tffreeze's temporary naming (.NAME.PID-XXXXXXXX.part), removed if the write fails.
            var folder = Path.GetDirectoryName(path);
            var tmp = Path.Combine(string.IsNullOrEmpty(folder) ? "." : folder, "." + Path.GetFileName(path) + "." +
                System.Diagnostics.Process.GetCurrentProcess().Id + "-" + Guid.NewGuid().ToString("N").Substring(0, 8) + ".part");
            try
            {
                using (var w = new BinaryWriter(File.Create(tmp)))
                {
                    w.Write((byte)0x93); w.Write(Encoding.ASCII.GetBytes("NUMPY")); w.Write((byte)1); w.Write((byte)0);
                    w.Write((ushort)header.Length); w.Write(Encoding.ASCII.GetBytes(header)); w.Write(bytes);
                }
                if (File.Exists(path)) File.Delete(path);
                File.Move(tmp, path);
            }
            finally { if (File.Exists(tmp)) File.Delete(tmp); }
        }
    }
}
