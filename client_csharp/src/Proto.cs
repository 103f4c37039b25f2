// Protobuf wire encoding of the tffreeze.v1 contract (protos/tffreeze/v1/*.proto),
// written by hand because this platform has no NuGet (no Google.Protobuf). Fields are
// written in field-number order, proto3 defaults are skipped, message fields and
// `optional` scalars keep their presence, map entries keep their order: decoding the
// Python server's bytes and encoding again gives the same bytes (tests check this
// against vectors made by Python's protobuf in the same run).
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace TfFreeze.V1
{
    public sealed class ProtoWriter
    {
        readonly MemoryStream ms = new MemoryStream();
        public byte[] ToArray() { return ms.ToArray(); }

        public void Varint(ulong v) { while (v >= 0x80) { ms.WriteByte((byte)(v | 0x80)); v >>= 7; } ms.WriteByte((byte)v); }
        void Tag(int field, int wire) { Varint((ulong)((field << 3) | wire)); }
        public void Int64(int f, long v) { if (v != 0) { Tag(f, 0); Varint((ulong)v); } }
        public void Int64Present(int f, long? v) { if (v.HasValue) { Tag(f, 0); Varint((ulong)v.Value); } }
        public void Bool(int f, bool v) { if (v) { Tag(f, 0); Varint(1); } }
        public void Double(int f, double v)
        {
            if (v == 0 && !double.IsNegative(v)) return;
            Tag(f, 1); ms.Write(BitConverter.GetBytes(v), 0, 8);
        }
        public void Bytes(int f, byte[] v) { if (v != null && v.Length > 0) { Tag(f, 2); Varint((ulong)v.Length); ms.Write(v, 0, v.Length); } }
        public void String(int f, string v) { if (!string.IsNullOrEmpty(v)) Bytes(f, Encoding.UTF8.GetBytes(v)); }
        public void Strings(int f, List<string> vs) { foreach (var v in vs) { var b = Encoding.UTF8.GetBytes(v); Tag(f, 2); Varint((ulong)b.Length); ms.Write(b, 0, b.Length); } }
        public void Message(int f, IMessage m) { if (m != null) { var b = m.ToByteArray(); Tag(f, 2); Varint((ulong)b.Length); ms.Write(b, 0, b.Length); } }
        public void Messages<T>(int f, List<T> ms_) where T : IMessage { foreach (var m in ms_) Message(f, m); }
        public void PackedInt64(int f, List<long> vs)
        {
            if (vs.Count == 0) return;
            var inner = new ProtoWriter();
            foreach (var v in vs) inner.Varint((ulong)v);
            Bytes(f, inner.ToArray());
        }
        public void Map<T>(int f, List<KeyValuePair<string, T>> entries) where T : IMessage, new()
        {
            foreach (var e in entries)
            {
                var entry = new ProtoWriter();
                entry.Tag(1, 2); var k = Encoding.UTF8.GetBytes(e.Key); entry.Varint((ulong)k.Length); entry.ms.Write(k, 0, k.Length);
                var v = (e.Value == null ? new T() : e.Value).ToByteArray();
                entry.Tag(2, 2); entry.Varint((ulong)v.Length); entry.ms.Write(v, 0, v.Length);
                Bytes(f, entry.ToArray());
            }
        }
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
        public byte[] Bytes()
        {
            int n = (int)Varint();
            if (n < 0 || pos + n > end) throw new InvalidDataException("truncated length-delimited field");
            var b = new byte[n]; Array.Copy(buf, pos, b, 0, n); pos += n; return b;
        }
        public string String() { return Encoding.UTF8.GetString(Bytes()); }
        public T Message<T>() where T : IMessage, new() { var m = new T(); m.MergeFrom(new ProtoReader(Bytes())); return m; }
        public void Int64s(List<long> into)
        {
            if (Wire == 2) { var r = new ProtoReader(Bytes()); while (r.More) into.Add((long)r.Varint()); }
            else into.Add(Int64());
        }
        public KeyValuePair<string, T> MapEntry<T>() where T : IMessage, new()
        {
            var r = new ProtoReader(Bytes()); string key = ""; T value = new T();
            while (r.More)
            {
                r.Next();
                if (r.Field == 1) key = r.String();
                else if (r.Field == 2) value = r.Message<T>();
                else r.Skip();
            }
            return new KeyValuePair<string, T>(key, value);
        }
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

    public interface IMessage
    {
        void WriteTo(ProtoWriter w);
        void MergeFrom(ProtoReader r);
    }

    public static class MessageExtensions
    {
        public static byte[] ToByteArray(this IMessage m) { var w = new ProtoWriter(); m.WriteTo(w); return w.ToArray(); }
        public static T Parse<T>(byte[] data) where T : IMessage, new() { var m = new T(); m.MergeFrom(new ProtoReader(data)); return m; }
    }

    public abstract class Message : IMessage
    {
        public abstract void WriteTo(ProtoWriter w);
        public void MergeFrom(ProtoReader r) { while (r.More) { r.Next(); if (!Read(r)) r.Skip(); } }
        protected abstract bool Read(ProtoReader r);
    }

    // ---- blob.proto ------------------------------------------------------------
    public sealed class Digest : Message
    {
        public string Sha256 = ""; public long SizeBytes;
        public override void WriteTo(ProtoWriter w) { w.String(1, Sha256); w.Int64(2, SizeBytes); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: Sha256 = r.String(); return true; case 2: SizeBytes = r.Int64(); return true; }
            return false;
        }
    }

    public sealed class FindMissingBlobsRequest : Message
    {
        public List<Digest> Blobs = new List<Digest>();
        public override void WriteTo(ProtoWriter w) { w.Messages(1, Blobs); }
        protected override bool Read(ProtoReader r) { if (r.Field == 1) { Blobs.Add(r.Message<Digest>()); return true; } return false; }
    }

    public sealed class FindMissingBlobsResponse : Message
    {
        public List<Digest> Missing = new List<Digest>();
        public override void WriteTo(ProtoWriter w) { w.Messages(1, Missing); }
        protected override bool Read(ProtoReader r) { if (r.Field == 1) { Missing.Add(r.Message<Digest>()); return true; } return false; }
    }

    public sealed class WriteBlobChunkRequest : Message
    {
        public Digest Digest; public long Offset; public byte[] Data = new byte[0]; public bool FinishWrite;
        public override void WriteTo(ProtoWriter w) { w.Message(1, Digest); w.Int64(2, Offset); w.Bytes(3, Data); w.Bool(4, FinishWrite); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field)
            {
                case 1: Digest = r.Message<Digest>(); return true; case 2: Offset = r.Int64(); return true;
                case 3: Data = r.Bytes(); return true; case 4: FinishWrite = r.Bool(); return true;
            }
            return false;
        }
    }

    public sealed class WriteBlobChunkResponse : Message
    {
        public long CommittedSize; public bool Complete;
        public override void WriteTo(ProtoWriter w) { w.Int64(1, CommittedSize); w.Bool(2, Complete); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: CommittedSize = r.Int64(); return true; case 2: Complete = r.Bool(); return true; }
            return false;
        }
    }

    public sealed class DownloadBlobRequest : Message
    {
        public Digest Digest; public long Offset;
        public override void WriteTo(ProtoWriter w) { w.Message(1, Digest); w.Int64(2, Offset); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: Digest = r.Message<Digest>(); return true; case 2: Offset = r.Int64(); return true; }
            return false;
        }
    }

    public sealed class DownloadBlobResponse : Message
    {
        public long Offset; public byte[] Data = new byte[0];
        public override void WriteTo(ProtoWriter w) { w.Int64(1, Offset); w.Bytes(2, Data); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: Offset = r.Int64(); return true; case 2: Data = r.Bytes(); return true; }
            return false;
        }
    }

    // ---- freeze.proto ------------------------------------------------------------
    public sealed class SourceFile : Message
    {
        public string Path = ""; public Digest Digest;
        public override void WriteTo(ProtoWriter w) { w.String(1, Path); w.Message(2, Digest); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: Path = r.String(); return true; case 2: Digest = r.Message<Digest>(); return true; }
            return false;
        }
    }

    public sealed class FreezeOptions : Message
    {
        public List<string> Outputs = new List<string>(), Inputs = new List<string>(), Tags = new List<string>(),
            Bind = new List<string>(), VarMap = new List<string>(), IncludeVariables = new List<string>(),
            ExcludeVariables = new List<string>();
        public long? Step; public string CheckpointPrefix = "", GraphPath = "", Signature = "", Target = "";
        public bool Ema, Optimize, Verify;

        public override void WriteTo(ProtoWriter w)
        {
            w.Strings(1, Outputs); w.Strings(2, Inputs); w.Int64Present(3, Step); w.String(4, CheckpointPrefix);
            w.String(5, GraphPath); w.String(6, Signature); w.Strings(7, Tags); w.Strings(8, Bind); w.Bool(9, Ema);
            w.Strings(10, VarMap); w.Strings(11, IncludeVariables); w.Strings(12, ExcludeVariables);
            w.Bool(13, Optimize); w.Bool(14, Verify); w.String(15, Target);
        }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field)
            {
                case 1: Outputs.Add(r.String()); return true; case 2: Inputs.Add(r.String()); return true;
                case 3: Step = r.Int64(); return true; case 4: CheckpointPrefix = r.String(); return true;
                case 5: GraphPath = r.String(); return true; case 6: Signature = r.String(); return true;
                case 7: Tags.Add(r.String()); return true; case 8: Bind.Add(r.String()); return true;
                case 9: Ema = r.Bool(); return true; case 10: VarMap.Add(r.String()); return true;
                case 11: IncludeVariables.Add(r.String()); return true; case 12: ExcludeVariables.Add(r.String()); return true;
                case 13: Optimize = r.Bool(); return true; case 14: Verify = r.Bool(); return true;
                case 15: Target = r.String(); return true;
            }
            return false;
        }
    }

    public sealed class FreezeRequest : Message
    {
        public List<SourceFile> Files = new List<SourceFile>(); public FreezeOptions Options;
        public override void WriteTo(ProtoWriter w) { w.Messages(1, Files); w.Message(2, Options); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: Files.Add(r.Message<SourceFile>()); return true; case 2: Options = r.Message<FreezeOptions>(); return true; }
            return false;
        }
    }

    public sealed class TensorShape : Message
    {
        public bool UnknownRank; public List<long> Dims = new List<long>();
        public override void WriteTo(ProtoWriter w) { w.Bool(1, UnknownRank); w.PackedInt64(2, Dims); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: UnknownRank = r.Bool(); return true; case 2: r.Int64s(Dims); return true; }
            return false;
        }
    }

    public sealed class TensorInfo : Message
    {
        public string Name = "", Dtype = "", Reason = "", DefaultJson = ""; public TensorShape Shape; public bool HasDefault;
        public override void WriteTo(ProtoWriter w)
        {
            w.String(1, Name); w.String(2, Dtype); w.Message(3, Shape); w.String(4, Reason); w.Bool(5, HasDefault); w.String(6, DefaultJson);
        }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field)
            {
                case 1: Name = r.String(); return true; case 2: Dtype = r.String(); return true;
                case 3: Shape = r.Message<TensorShape>(); return true; case 4: Reason = r.String(); return true;
                case 5: HasDefault = r.Bool(); return true; case 6: DefaultJson = r.String(); return true;
            }
            return false;
        }
    }

    public sealed class CheckpointInfo : Message
    {
        public string Prefix = "", MetaGraph = ""; public long? Step;
        public override void WriteTo(ProtoWriter w) { w.String(1, Prefix); w.Int64Present(2, Step); w.String(3, MetaGraph); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field)
            {
                case 1: Prefix = r.String(); return true; case 2: Step = r.Int64(); return true; case 3: MetaGraph = r.String(); return true;
            }
            return false;
        }
    }

    public sealed class Provenance : Message
    {
        public string TensorflowVersion = "", ServerVersion = "";
        public override void WriteTo(ProtoWriter w) { w.String(1, TensorflowVersion); w.String(2, ServerVersion); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: TensorflowVersion = r.String(); return true; case 2: ServerVersion = r.String(); return true; }
            return false;
        }
    }

    public sealed class Progress : Message
    {
        public string Stage = "", Message_ = ""; public double Fraction;
        public override void WriteTo(ProtoWriter w) { w.String(1, Stage); w.String(2, Message_); w.Double(3, Fraction); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: Stage = r.String(); return true; case 2: Message_ = r.String(); return true; case 3: Fraction = r.Double(); return true; }
            return false;
        }
    }

    public sealed class Binding : Message
    {
        public string Name = "", ValueJson = "", Reason = "";
        public override void WriteTo(ProtoWriter w) { w.String(1, Name); w.String(2, ValueJson); w.String(3, Reason); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: Name = r.String(); return true; case 2: ValueJson = r.String(); return true; case 3: Reason = r.String(); return true; }
            return false;
        }
    }

    public sealed class SignatureInfo : Message
    {
        public string Name = "";
        public List<KeyValuePair<string, TensorInfo>> Inputs = new List<KeyValuePair<string, TensorInfo>>(),
            Outputs = new List<KeyValuePair<string, TensorInfo>>();
        public override void WriteTo(ProtoWriter w) { w.String(1, Name); w.Map(2, Inputs); w.Map(3, Outputs); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field)
            {
                case 1: Name = r.String(); return true; case 2: Inputs.Add(r.MapEntry<TensorInfo>()); return true;
                case 3: Outputs.Add(r.MapEntry<TensorInfo>()); return true;
            }
            return false;
        }
    }

    public sealed class OutputCheck : Message
    {
        public string Name = ""; public double MaxAbsDiff;
        public override void WriteTo(ProtoWriter w) { w.String(1, Name); w.Double(2, MaxAbsDiff); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field) { case 1: Name = r.String(); return true; case 2: MaxAbsDiff = r.Double(); return true; }
            return false;
        }
    }

    public sealed class FreezeResult : Message
    {
        public Digest Graph; public List<TensorInfo> Inputs = new List<TensorInfo>(), Outputs = new List<TensorInfo>();
        public CheckpointInfo Checkpoint; public List<string> Warnings = new List<string>(); public Provenance Provenance;
        public long NodeCount, VariablesFrozen; public List<Binding> Bindings = new List<Binding>(); public SignatureInfo Signature;
        public List<OutputCheck> Verification = new List<OutputCheck>(); public string SourceKind = "", Target = "";
        public List<string> EmaVariables = new List<string>();

        public override void WriteTo(ProtoWriter w)
        {
            w.Message(1, Graph); w.Messages(2, Inputs); w.Messages(3, Outputs); w.Message(4, Checkpoint); w.Strings(5, Warnings);
            w.Message(6, Provenance); w.Int64(7, NodeCount); w.Int64(8, VariablesFrozen); w.Messages(9, Bindings);
            w.Message(10, Signature); w.Messages(11, Verification); w.String(12, SourceKind); w.Strings(13, EmaVariables);
            w.String(14, Target);
        }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field)
            {
                case 1: Graph = r.Message<Digest>(); return true; case 2: Inputs.Add(r.Message<TensorInfo>()); return true;
                case 3: Outputs.Add(r.Message<TensorInfo>()); return true; case 4: Checkpoint = r.Message<CheckpointInfo>(); return true;
                case 5: Warnings.Add(r.String()); return true; case 6: Provenance = r.Message<Provenance>(); return true;
                case 7: NodeCount = r.Int64(); return true; case 8: VariablesFrozen = r.Int64(); return true;
                case 9: Bindings.Add(r.Message<Binding>()); return true; case 10: Signature = r.Message<SignatureInfo>(); return true;
                case 11: Verification.Add(r.Message<OutputCheck>()); return true; case 12: SourceKind = r.String(); return true;
                case 13: EmaVariables.Add(r.String()); return true; case 14: Target = r.String(); return true;
            }
            return false;
        }
    }

    public sealed class FreezeEvent : Message
    {
        public Progress Progress; public FreezeResult Result;
        public override void WriteTo(ProtoWriter w) { w.Message(1, Progress); w.Message(2, Result); }
        protected override bool Read(ProtoReader r)
        {
            switch (r.Field)
            {
                case 1: Progress = r.Message<Progress>(); Result = null; return true;
                case 2: Result = r.Message<FreezeResult>(); Progress = null; return true;
            }
            return false;
        }
    }
}
