// The protobuf runtime under the generated messages (gen/TfFreeze.V1.g.cs, made by
// tools/gen_csharp.py from protos/): proto3 binary encoding, and the manifest JSON
// mapping written byte-for-byte as tffreeze_api.manifest writes it (Python's
// json.dumps(indent=2, ensure_ascii=True): same separators, escapes and float repr).
// Written by hand because this platform has no NuGet (no Google.Protobuf).
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace TfFreeze.Protobuf
{
    public sealed class ProtoWriter
    {
        readonly MemoryStream ms = new MemoryStream();
        public byte[] ToArray() { return ms.ToArray(); }

        public void Varint(ulong v) { while (v >= 0x80) { ms.WriteByte((byte)(v | 0x80)); v >>= 7; } ms.WriteByte((byte)v); }
        void Tag(int field, int wire) { Varint((ulong)((field << 3) | wire)); }
        // `present`: write even a default value (presence fields, map entries, oneof members).
        public void Int64(int f, long v, bool present) { if (v != 0 || present) { Tag(f, 0); Varint((ulong)v); } }
        public void UInt64(int f, ulong v, bool present) { if (v != 0 || present) { Tag(f, 0); Varint(v); } }
        public void Bool(int f, bool v, bool present) { if (v || present) { Tag(f, 0); Varint(v ? 1UL : 0UL); } }
        public void Double(int f, double v, bool present)
        {
            if (v == 0 && !double.IsNegative(v) && !present) return;
            Tag(f, 1); ms.Write(BitConverter.GetBytes(v), 0, 8);
        }
        public void Float(int f, float v, bool present)
        {
            if (v == 0 && !float.IsNegative(v) && !present) return;
            Tag(f, 5); ms.Write(BitConverter.GetBytes(v), 0, 4);
        }
        public void Bytes(int f, byte[] v, bool present)
        {
            if (v == null || (v.Length == 0 && !present)) return;
            Tag(f, 2); Varint((ulong)v.Length); ms.Write(v, 0, v.Length);
        }
        public void String(int f, string v, bool present) { if (v != null) Bytes(f, Encoding.UTF8.GetBytes(v), present); }
        public void Message(int f, ProtoMessage m) { if (m != null) Bytes(f, m.ToByteArray(), true); }
    }

    public sealed class ProtoReader
    {
        readonly byte[] buf; int pos; readonly int end;
        public ProtoReader(byte[] data) : this(data, 0, data.Length) { }
        ProtoReader(byte[] data, int start, int length) { buf = data; pos = start; end = start + length; }
        public bool More { get { return pos < end; } }
        public int Field { get; private set; }
        public int Wire { get; private set; }

        public ulong Varint()
        {
            ulong v = 0; int shift = 0;
            while (true)
            {
                if (pos >= end) throw new InvalidDataException("truncated varint");
                byte b = buf[pos++];
                v |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return v;
                shift += 7;
                if (shift > 63) throw new InvalidDataException("varint too long");
            }
        }
        public void Next() { var tag = Varint(); Field = (int)(tag >> 3); Wire = (int)(tag & 7); }
        public long Int64() { return (long)Varint(); }
        public bool Bool() { return Varint() != 0; }
        public double Double() { if (pos + 8 > end) throw new InvalidDataException("truncated double"); var v = BitConverter.ToDouble(buf, pos); pos += 8; return v; }
        public float Float() { if (pos + 4 > end) throw new InvalidDataException("truncated float"); var v = BitConverter.ToSingle(buf, pos); pos += 4; return v; }
        public byte[] Bytes()
        {
            int n = (int)Varint();
            if (n < 0 || pos + n > end) throw new InvalidDataException("truncated length-delimited field");
            var b = new byte[n]; Array.Copy(buf, pos, b, 0, n); pos += n; return b;
        }
        public string String() { return Encoding.UTF8.GetString(Bytes()); }
        public ProtoReader Sub() { return new ProtoReader(Bytes()); }
        public T Message<T>() where T : ProtoMessage, new() { var m = new T(); m.MergeFrom(Sub()); return m; }
        public void Skip()
        {
            switch (Wire)
            {
                case 0: Varint(); break;
                case 1: pos += 8; break;
                case 2: Bytes(); break;
                case 5: pos += 4; break;
                default: throw new InvalidDataException("unsupported wire type " + Wire);
            }
        }
    }

    public abstract class ProtoMessage
    {
        public abstract void WriteTo(ProtoWriter w);
        protected abstract bool Read(ProtoReader r);
        public void MergeFrom(ProtoReader r) { while (r.More) { r.Next(); if (!Read(r)) r.Skip(); } }
        public byte[] ToByteArray() { var w = new ProtoWriter(); WriteTo(w); return w.ToArray(); }
        public static T Parse<T>(byte[] data) where T : ProtoMessage, new() { var m = new T(); m.MergeFrom(new ProtoReader(data)); return m; }
    }

    /// <summary>A protobuf map: keeps the order entries were read or added in (so re-encoding gives
    /// the same bytes).</summary>
    public sealed class ProtoMap<TValue> : IEnumerable<KeyValuePair<string, TValue>>
    {
        readonly List<KeyValuePair<string, TValue>> entries = new List<KeyValuePair<string, TValue>>();
        readonly Dictionary<string, int> index = new Dictionary<string, int>(StringComparer.Ordinal);
        public int Count { get { return entries.Count; } }
        public bool ContainsKey(string key) { return index.ContainsKey(key); }
        public bool TryGetValue(string key, out TValue value)
        {
            int i;
            if (index.TryGetValue(key, out i)) { value = entries[i].Value; return true; }
            value = default(TValue); return false;
        }
        public TValue this[string key]
        {
            get { return entries[index[key]].Value; }
            set
            {
                int i;
                if (index.TryGetValue(key, out i)) entries[i] = new KeyValuePair<string, TValue>(key, value);
                else { index[key] = entries.Count; entries.Add(new KeyValuePair<string, TValue>(key, value)); }
            }
        }
        public void Add(string key, TValue value) { this[key] = value; }
        public IEnumerator<KeyValuePair<string, TValue>> GetEnumerator() { return entries.GetEnumerator(); }
        IEnumerator IEnumerable.GetEnumerator() { return entries.GetEnumerator(); }
    }
}
