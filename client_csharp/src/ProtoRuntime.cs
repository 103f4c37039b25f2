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
        /// <summary>The message's JSON value (JsonObject, List, string, long, JsonFloat, bool, null).</summary>
        public abstract object ToJson();
        public void MergeFrom(ProtoReader r) { while (r.More) { r.Next(); if (!Read(r)) r.Skip(); } }
        public byte[] ToByteArray() { var w = new ProtoWriter(); WriteTo(w); return w.ToArray(); }
        public static T Parse<T>(byte[] data) where T : ProtoMessage, new() { var m = new T(); m.MergeFrom(new ProtoReader(data)); return m; }
        /// <summary>The JSON text tffreeze_api.manifest writes for this message (the manifest, for a FreezeResult).</summary>
        public string ToJsonText() { return JsonCodec.Write(ToJson()) + "\n"; }
    }

    /// <summary>A protobuf map: keeps the order entries were read or added in (so re-encoding gives
    /// the same bytes); JSON output sorts keys.</summary>
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
        public IEnumerable<KeyValuePair<string, TValue>> Sorted()
        {
            var sorted = new List<KeyValuePair<string, TValue>>(entries);
            sorted.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
            return sorted;
        }
        public IEnumerator<KeyValuePair<string, TValue>> GetEnumerator() { return entries.GetEnumerator(); }
        IEnumerator IEnumerable.GetEnumerator() { return entries.GetEnumerator(); }
    }

    /// <summary>A JSON object that keeps insertion order.</summary>
    public sealed class JsonObject : IEnumerable<KeyValuePair<string, object>>
    {
        readonly List<KeyValuePair<string, object>> items = new List<KeyValuePair<string, object>>();
        public void Add(string key, object value) { items.Add(new KeyValuePair<string, object>(key, value)); }
        public int Count { get { return items.Count; } }
        public IEnumerator<KeyValuePair<string, object>> GetEnumerator() { return items.GetEnumerator(); }
        IEnumerator IEnumerable.GetEnumerator() { return items.GetEnumerator(); }
    }

    /// <summary>A double printed as Python's repr prints it.</summary>
    public struct JsonFloat { public double Value; public JsonFloat(double v) { Value = v; } }

    public static class JsonCodec
    {
        public static object EnumName<T>(T value) where T : struct { return value.ToString(); }

        /// <summary>A double field: "NaN"/"Infinity"/"-Infinity" as proto3 JSON spells them, else a float.</summary>
        public static object Float(double d)
        {
            if (double.IsNaN(d)) return "NaN";
            if (double.IsInfinity(d)) return d > 0 ? "Infinity" : "-Infinity";
            return new JsonFloat(d);
        }

        /// <summary>A number inside google.protobuf.Value: integral ones (|x| &lt; 2^53) as integers.</summary>
        static object ValueNumber(double d)
        {
            if (!double.IsNaN(d) && !double.IsInfinity(d) && d == Math.Floor(d) && Math.Abs(d) < 9007199254740992.0)
                return (long)d;
            return Float(d);
        }

        public static object WellKnown(ProtoMessage m)
        {
            var list = m as Google.Protobuf.WellKnownTypes.ListValue;
            if (list != null)
            {
                var l = new List<object>();
                foreach (var v in list.Values) l.Add(WellKnown(v));
                return l;
            }
            var st = m as Google.Protobuf.WellKnownTypes.Struct;
            if (st != null)
            {
                var o = new JsonObject();
                foreach (var e in st.Fields.Sorted()) o.Add(e.Key, WellKnown(e.Value));
                return o;
            }
            var value = (Google.Protobuf.WellKnownTypes.Value)m;
            if (value.NumberValue.HasValue) return ValueNumber(value.NumberValue.Value);
            if (value.StringValue != null) return value.StringValue;
            if (value.BoolValue.HasValue) return value.BoolValue.Value;
            if (value.StructValue != null) return WellKnown(value.StructValue);
            if (value.ListValue != null) return WellKnown(value.ListValue);
            return null;
        }

        public static string Write(object value)
        {
            var sb = new StringBuilder();
            Write(sb, value, 0);
            return sb.ToString();
        }

        static void Write(StringBuilder sb, object v, int indent)
        {
            if (v == null) { sb.Append("null"); return; }
            if (v is string) { Quote(sb, (string)v); return; }
            if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
            if (v is JsonFloat) { sb.Append(PyRepr(((JsonFloat)v).Value)); return; }
            if (v is double) { sb.Append(PyRepr((double)v)); return; }
            if (v is int || v is long) { sb.Append(Convert.ToInt64(v).ToString(CultureInfo.InvariantCulture)); return; }
            if (v is uint || v is ulong) { sb.Append(Convert.ToUInt64(v).ToString(CultureInfo.InvariantCulture)); return; }
            var pad = new string(' ', indent + 2);
            var obj = v as JsonObject;
            if (obj != null)
            {
                if (obj.Count == 0) { sb.Append("{}"); return; }
                sb.Append("{\n"); int i = 0;
                foreach (var e in obj)
                {
                    sb.Append(pad); Quote(sb, e.Key); sb.Append(": "); Write(sb, e.Value, indent + 2);
                    sb.Append(++i < obj.Count ? ",\n" : "\n");
                }
                sb.Append(' ', indent).Append('}');
                return;
            }
            var dict = v as IDictionary;
            if (dict != null)
            {
                var o = new JsonObject();
                foreach (DictionaryEntry e in dict) o.Add((string)e.Key, e.Value);
                Write(sb, o, indent);
                return;
            }
            var list = v as IList;
            if (list != null)
            {
                if (list.Count == 0) { sb.Append("[]"); return; }
                sb.Append("[\n");
                for (int i = 0; i < list.Count; i++)
                {
                    sb.Append(pad); Write(sb, list[i], indent + 2);
                    sb.Append(i + 1 < list.Count ? ",\n" : "\n");
                }
                sb.Append(' ', indent).Append(']');
                return;
            }
            throw new ArgumentException("cannot write " + v.GetType() + " as JSON");
        }

        /// <summary>A JSON string as Python's json.dumps(ensure_ascii=True) writes it.</summary>
        static void Quote(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20 || c > 0x7e) sb.Append("\\u").Append(((int)c).ToString("x4"));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }

        /// <summary>Python's repr of a finite double: the shortest digits that round-trip,
        /// fixed notation for 1e-4 &lt;= |x| &lt; 1e16 (with ".0" when integral), else d.ddde+XX.</summary>
        public static string PyRepr(double d)
        {
            if (d == 0) return (1 / d < 0) ? "-0.0" : "0.0";
            string r = null;
            for (int p = 1; p <= 17; p++)
            {
                r = d.ToString("E" + (p - 1), CultureInfo.InvariantCulture);
                double back;  // a rounded form may overflow (1.8E+308): not a match
                if (double.TryParse(r, NumberStyles.Float, CultureInfo.InvariantCulture, out back) && back == d) break;
            }
            bool neg = r[0] == '-';
            if (neg) r = r.Substring(1);
            int e = r.IndexOf('E');
            string digits = r.Substring(0, e).Replace(".", "").TrimEnd('0');
            if (digits.Length == 0) digits = "0";
            int exp = int.Parse(r.Substring(e + 1), CultureInfo.InvariantCulture);
            int decpt = exp + 1;  // d = 0.digits * 10^decpt
            string s;
            if (decpt > -4 && decpt <= 16)
            {
                if (decpt <= 0) s = "0." + new string('0', -decpt) + digits;
                else if (decpt >= digits.Length) s = digits + new string('0', decpt - digits.Length) + ".0";
                else s = digits.Substring(0, decpt) + "." + digits.Substring(decpt);
            }
            else
            {
                s = digits.Substring(0, 1) + (digits.Length > 1 ? "." + digits.Substring(1) : "") + "e" +
                    (exp < 0 ? "-" : "+") + Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture);
            }
            return (neg ? "-" : "") + s;
        }
    }
}
