// Minimal JSON reader (no NuGet here): text to objects (Dictionary<string, object>,
// List<object>, string, double, bool, null). Enough for tffreeze manifests.
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
    }
}
