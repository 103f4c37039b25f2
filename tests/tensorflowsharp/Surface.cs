// The built-in binding's public surface against TensorFlowSharp's (test tool).
//
//   mono Surface.exe compare BINDING.dll TensorFlowSharp.dll
//       Every public or protected type and member of BINDING (namespace TfFreeze.TensorFlow)
//       must exist in TensorFlowSharp (namespace TensorFlow) with the same signature: kind,
//       base type, modifiers, parameter types, names, ref/out/params, optional values,
//       return type, enum values. Prints each one that does not; exit 1 if any.
//   mono Surface.exe usage BINDING.dll OUT.cs
//       Writes a C# file that uses every public member of BINDING: constructors and
//       methods called with named arguments, methods also bound to delegates of their
//       exact type, properties, indexers, fields and enum members read (written where
//       settable). It compiles against TensorFlowSharp only if each one exists there.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text;

public static class Surface
{
    const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance |
                             BindingFlags.Static | BindingFlags.DeclaredOnly;

    static string Name(Type t)
    {
        if (t.IsByRef) return Name(t.GetElementType()) + "&";
        if (t.IsArray) return Name(t.GetElementType()) + "[" + new string(',', t.GetArrayRank() - 1) + "]";
        if (t.IsGenericType)
        {
            var def = t.GetGenericTypeDefinition().FullName;
            return def.Substring(0, def.IndexOf('`')) + "<" + string.Join(", ", t.GetGenericArguments().Select(Name)) + ">";
        }
        var name = (t.FullName ?? t.Name).Replace('+', '.');
        return name.StartsWith("TfFreeze.TensorFlow.") ? name.Substring("TfFreeze.".Length) : name;
    }

    static string Cs(Type t)
    {
        if (t.IsByRef) return Cs(t.GetElementType());
        if (t == typeof(void)) return "void";
        return "global::" + Name(t);
    }

    static bool Visible(Type t)
    {
        if (t.IsNested) return (t.IsNestedPublic || t.IsNestedFamily || t.IsNestedFamORAssem) && Visible(t.DeclaringType);
        return t.IsPublic;
    }

    static bool Visible(MethodBase m) { return m != null && (m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly); }
    static bool Visible(FieldInfo f) { return f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly; }

    static string Params(ParameterInfo[] ps)
    {
        return string.Join(", ", ps.Select(p =>
            (p.IsOut ? "out " : p.ParameterType.IsByRef ? "ref " : "") +
            (p.IsDefined(typeof(ParamArrayAttribute), false) ? "params " : "") +
            Name(p.ParameterType) + " " + p.Name +
            (p.IsOptional ? " = " + (p.RawDefaultValue == null ? "null" : p.RawDefaultValue.ToString()) : "")));
    }

    static string Access(MethodBase m) { return m.IsPublic ? "public" : "protected"; }

    static string Modifiers(MethodBase m)
    {
        var s = Access(m) + (m.IsStatic ? " static" : "") + (m.IsAbstract ? " abstract" : "");
        if (m.IsVirtual && !m.IsFinal && !m.IsAbstract)
            s += ((MethodInfo)m).GetBaseDefinition() == m ? " virtual" : " override";
        return s;
    }

    /// <summary>type signature -> its members' signatures.</summary>
    static Dictionary<string, HashSet<string>> Describe(Assembly asm, string ns)
    {
        var result = new Dictionary<string, HashSet<string>>();
        foreach (var t in asm.GetTypes().Where(t => t.Namespace == ns && Visible(t)))
        {
            var kind = t.IsEnum ? "enum " + Name(Enum.GetUnderlyingType(t)) : t.IsValueType ? "struct"
                     : t.IsInterface ? "interface" : t.IsAbstract && t.IsSealed ? "static class"
                     : (t.IsAbstract ? "abstract " : "") + (t.IsSealed ? "sealed " : "") + "class";
            var baseType = t.BaseType == null || t.IsEnum || t.IsValueType ? "" : " : " + Name(t.BaseType);
            var ifaces = t.IsEnum ? "" : string.Concat(t.GetInterfaces().Select(Name).OrderBy(x => x).Select(x => ", " + x));
            var members = new HashSet<string>();
            foreach (var c in t.GetConstructors(All).Where(c => Visible(c) && !c.IsStatic))
                members.Add(Access(c) + " .ctor(" + Params(c.GetParameters()) + ")");
            foreach (var m in t.GetMethods(All).Where(m => Visible(m) && !m.IsSpecialName))
                members.Add(Modifiers(m) + " " + Name(m.ReturnType) + " " + m.Name + "(" + Params(m.GetParameters()) + ")");
            foreach (var p in t.GetProperties(All))
            {
                var get = p.GetGetMethod(true); var set = p.GetSetMethod(true);
                if (!Visible(get) && !Visible(set)) continue;
                var acc = Visible(get) ? get : set;
                members.Add(Modifiers(acc) + " " + Name(p.PropertyType) + " " + p.Name +
                            (p.GetIndexParameters().Length > 0 ? "[" + Params(p.GetIndexParameters()) + "]" : "") +
                            " {" + (Visible(get) ? " get;" : "") + (Visible(set) ? " set;" : "") + " }");
            }
            foreach (var f in t.GetFields(All).Where(f => Visible(f) && !f.IsSpecialName))
                members.Add(t.IsEnum ? f.Name + " = " + Convert.ToUInt64(f.GetRawConstantValue())
                                     : (f.IsPublic ? "public" : "protected") + (f.IsStatic ? " static" : "") +
                                       (f.IsInitOnly ? " readonly" : "") + " " + Name(f.FieldType) + " " + f.Name);
            foreach (var e in t.GetEvents(All)) members.Add("event " + Name(e.EventHandlerType) + " " + e.Name);
            result[kind + " " + Name(t) + baseType + ifaces] = members;
        }
        return result;
    }

    static int Compare(string binding, string tfsharp)
    {
        var ours = Describe(Assembly.LoadFrom(binding), "TfFreeze.TensorFlow");
        var theirs = Describe(Assembly.LoadFrom(tfsharp), "TensorFlow");
        int missing = 0, total = 0;
        foreach (var type in ours.OrderBy(kv => kv.Key))
        {
            HashSet<string> counterpart;
            total++;
            if (!theirs.TryGetValue(type.Key, out counterpart))
            {
                var name = type.Key.Split(' ').SkipWhile(w => w != "class" && w != "struct" && w != "enum" && w != "interface").Skip(1).First();
                var similar = theirs.Keys.Where(k => k.Split(' ').Contains(name));
                Console.WriteLine("no counterpart: " + type.Key + (similar.Any() ? "   (TensorFlowSharp: " + string.Join("; ", similar) + ")" : ""));
                missing++;
                continue;
            }
            foreach (var member in type.Value.OrderBy(m => m))
            {
                total++;
                if (counterpart.Contains(member)) continue;
                Console.WriteLine("no counterpart: " + type.Key.Split(':')[0].Trim() + " :: " + member);
                missing++;
            }
        }
        Console.WriteLine("{0} of {1} public types and members have a TensorFlowSharp counterpart", total - missing, total);
        return missing == 0 ? 0 : 1;
    }

    static string Args(ParameterInfo[] ps)
    {
        return string.Join(", ", ps.Select(p => "@" + p.Name + ": " + (p.IsOut ? "out " : p.ParameterType.IsByRef ? "ref " : "") +
            (p.ParameterType.IsByRef ? "v_" + p.Name : "default(" + Cs(p.ParameterType) + ")")));
    }

    static string ByRefLocals(ParameterInfo[] ps)
    {
        return string.Concat(ps.Where(p => p.ParameterType.IsByRef).Select(p => Cs(p.ParameterType) + " v_" + p.Name + " = default(" + Cs(p.ParameterType) + "); "));
    }

    static string Delegate(MethodInfo m)
    {
        var ps = m.GetParameters();
        if (ps.Any(p => p.ParameterType.IsByRef) || ps.Length > 16) return null;
        var types = ps.Select(p => Cs(p.ParameterType)).ToList();
        if (m.ReturnType == typeof(void)) return types.Count == 0 ? "global::System.Action" : "global::System.Action<" + string.Join(", ", types) + ">";
        types.Add(Cs(m.ReturnType));
        return "global::System.Func<" + string.Join(", ", types) + ">";
    }

    static int Usage(string binding, string output)
    {
        var asm = Assembly.LoadFrom(binding);
        var sb = new StringBuilder();
        sb.AppendLine("// Generated by tests/tensorflowsharp/Surface.cs from " + Path.GetFileName(binding) + ": every public member, used.");
        sb.AppendLine("#pragma warning disable 168, 219, 618, 1717");
        sb.AppendLine("public static class BindingSurfaceUse {");
        int n = 0;
        foreach (var t in asm.GetTypes().Where(t => t.Namespace == "TfFreeze.TensorFlow" && Visible(t) && (t.IsPublic || t.IsNestedPublic)).OrderBy(t => t.FullName))
        {
            var tn = Cs(t);
            bool staticType = t.IsAbstract && t.IsSealed;
            var obj = "o";
            // Each use is a method of its own taking an instance (except for static classes).
            Action<string> use = code => sb.AppendLine("    static void Use" + (n++) + "(" + (staticType ? "" : tn + " o") + ") { " + code + " }");
            if (!staticType) use(tn + " typed = o;");
            if (t.IsEnum)
            {
                foreach (var f in t.GetFields(BindingFlags.Public | BindingFlags.Static))
                    use("var v = " + tn + "." + f.Name + ";");
                continue;
            }
            foreach (var c in t.IsAbstract ? new ConstructorInfo[0] : t.GetConstructors(BindingFlags.Public | BindingFlags.Instance))
                use(ByRefLocals(c.GetParameters()) + "var v = new " + tn + "(" + Args(c.GetParameters()) + ");");
            foreach (var m in t.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly).Where(m => !m.IsSpecialName))
            {
                var target = m.IsStatic ? tn : obj;
                use(ByRefLocals(m.GetParameters()) + target + "." + m.Name + "(" + Args(m.GetParameters()) + ");");
                var d = Delegate(m);
                if (d != null) use(d + " f = " + target + "." + m.Name + ";");
            }
            foreach (var p in t.GetProperties(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                var isStatic = (p.GetGetMethod() ?? p.GetSetMethod()).IsStatic;
                var target = isStatic ? tn : obj;
                var idx = p.GetIndexParameters();
                var access = idx.Length > 0 ? target + "[" + string.Join(", ", idx.Select(i => "default(" + Cs(i.ParameterType) + ")")) + "]" : target + "." + p.Name;
                if (p.GetGetMethod() != null) use(Cs(p.PropertyType) + " v = " + access + ";");
                if (p.GetSetMethod() != null) use(access + " = default(" + Cs(p.PropertyType) + ");");
            }
            foreach (var f in t.GetFields(BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly))
            {
                var access = (f.IsStatic ? tn : "o") + "." + f.Name;
                use(Cs(f.FieldType) + " v = " + access + ";");
                if (!f.IsInitOnly && !f.IsLiteral) use(access + " = default(" + Cs(f.FieldType) + ");");
            }
        }
        sb.AppendLine("}");
        File.WriteAllText(output, sb.ToString());
        Console.WriteLine("{0} uses written to {1}", n, output);
        return 0;
    }

    public static int Main(string[] args)
    {
        if (args.Length == 3 && args[0] == "compare") return Compare(args[1], args[2]);
        if (args.Length == 3 && args[0] == "usage") return Usage(args[1], args[2]);
        Console.Error.WriteLine("usage: Surface.exe compare BINDING.dll TensorFlowSharp.dll | usage BINDING.dll OUT.cs");
        return 2;
    }
}
