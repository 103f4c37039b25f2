// Minimal JSON (no NuGet here): a reader to objects (Dictionary<string, object>,
// List<object>, string, double, bool, null) and a writer with two-space indents.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace TfFreeze
{
    public static class Json
    {
        public static object Parse(string text)
        {
            int pos = 0;
            var value = Value(text, ref pos);
            Ws(text, ref pos);
            if (pos != text.Length) throw new FormatException("JSON: trailing characters at " + pos);
            return value;
        }

        static void Ws(string s, ref int p) { while (p < s.Length && char.IsWhiteSpace(s[p])) p++; }

        static object Value(string s, ref int p)
        {
            Ws(s, ref p);
            if (p >= s.Length) throw new FormatException("JSON: unexpected end");
            char c = s[p];
            if (c == '{')
            {
                var d = new Dictionary<string, object>(); p++; Ws(s, ref p);
                if (s[p] == '}') { p++; return d; }
                while (true)
                {
                    Ws(s, ref p); var key = Str(s, ref p); Ws(s, ref p);
                    if (s[p++] != ':') throw new FormatException("JSON: ':' expected at " + p);
                    d[key] = Value(s, ref p); Ws(s, ref p);
                    if (s[p] == ',') { p++; continue; }
                    if (s[p] == '}') { p++; return d; }
                    throw new FormatException("JSON: ',' or '}' expected at " + p);
                }
            }
            if (c == '[')
            {
                var l = new List<object>(); p++; Ws(s, ref p);
                if (s[p] == ']') { p++; return l; }
                while (true)
                {
                    l.Add(Value(s, ref p)); Ws(s, ref p);
                    if (s[p] == ',') { p++; continue; }
                    if (s[p] == ']') { p++; return l; }
                    throw new FormatException("JSON: ',' or ']' expected at " + p);
                }
            }
            if (c == '"') return Str(s, ref p);
            if (s.Substring(p).StartsWith("true")) { p += 4; return true; }
            if (s.Substring(p).StartsWith("false")) { p += 5; return false; }
            if (s.Substring(p).StartsWith("null")) { p += 4; return null; }
            int start = p;
            while (p < s.Length && "+-0123456789.eE".IndexOf(s[p]) >= 0) p++;
            if (start == p) throw new FormatException("JSON: unexpected '" + c + "' at " + p);
            return double.Parse(s.Substring(start, p - start), CultureInfo.InvariantCulture);
        }

        static string Str(string s, ref int p)
        {
            if (s[p] != '"') throw new FormatException("JSON: string expected at " + p);
            var sb = new StringBuilder(); p++;
            while (s[p] != '"')
            {
                if (s[p] == '\\')
                {
                    p++;
                    switch (s[p])
                    {
                        case 'n': sb.Append('\n'); break; case 't': sb.Append('\t'); break; case 'r': sb.Append('\r'); break;
                        case 'b': sb.Append('\b'); break; case 'f': sb.Append('\f'); break;
                        case 'u': sb.Append((char)Convert.ToInt32(s.Substring(p + 1, 4), 16)); p += 4; break;
                        default: sb.Append(s[p]); break;
                    }
                    p++;
                }
                else sb.Append(s[p++]);
            }
            p++;
            return sb.ToString();
        }

        /// <summary>Serialize dictionaries (insertion order), lists, strings, numbers, bools and null.</summary>
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
            if (v is double || v is float)
            {
                double d = Convert.ToDouble(v);
                sb.Append(d == Math.Floor(d) && Math.Abs(d) < 1e15 ? d.ToString("0.0", CultureInfo.InvariantCulture)
                                                                    : d.ToString("R", CultureInfo.InvariantCulture));
                return;
            }
            if (v is int || v is long) { sb.Append(Convert.ToInt64(v).ToString(CultureInfo.InvariantCulture)); return; }
            var pad = new string(' ', indent + 2);
            var dict = v as IDictionary;
            if (dict != null)
            {
                if (dict.Count == 0) { sb.Append("{}"); return; }
                sb.Append("{\n"); int i = 0;
                foreach (DictionaryEntry e in dict)
                {
                    sb.Append(pad); Quote(sb, (string)e.Key); sb.Append(": "); Write(sb, e.Value, indent + 2);
                    sb.Append(++i < dict.Count ? ",\n" : "\n");
                }
                sb.Append(new string(' ', indent)).Append('}');
                return;
            }
            var list = v as IList;
            if (list != null)
            {
                if (list.Count == 0) { sb.Append("[]"); return; }
                sb.Append("[\n");
                for (int i = 0; i < list.Count; i++)
                {
                    sb.Append(pad); Write(sb, list[i], indent + 2); sb.Append(i + 1 < list.Count ? ",\n" : "\n");
                }
                sb.Append(new string(' ', indent)).Append(']');
                return;
            }
            throw new ArgumentException("JSON: cannot write " + v.GetType().Name);
        }

        static void Quote(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (var c in s)
            {
                if (c == '"' || c == '\\') sb.Append('\\').Append(c);
                else if (c == '\n') sb.Append("\\n");
                else if (c < 0x20) sb.AppendFormat("\\u{0:x4}", (int)c);
                else sb.Append(c);
            }
            sb.Append('"');
        }
    }

    /// <summary>A dictionary that remembers insertion order (for manifest JSON that reads like Python's).</summary>
    public class OrderedMap : System.Collections.Specialized.OrderedDictionary
    {
        public OrderedMap Add2(string key, object value) { Add(key, value); return this; }
    }
}
