// The page `tffreeze serve` shows on its gRPC-Web port: choose a checkpoint folder, see what
// would be frozen and why, freeze, download the graph and its manifest. It speaks the same
// contract as every client (protos/, generated into ../gen by `make web`): the server chooses
// the files (PlanFreeze), only those it lacks are uploaded (hashed here, streaming), Inspect
// and Freeze answer with the report and the graph. Element ids are stable for scripts and tests.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { sha256 } from "@noble/hashes/sha2.js";

import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb";
import { DigestSchema } from "../gen/tffreeze/v1/blob_pb";
import {
  OptionTextSchema,
  type PlanFreezeResponse,
  type SourceFile,
  SourceFileSchema,
  type TensorInfo,
} from "../gen/tffreeze/v1/freeze_pb";
import { FreezeService } from "../gen/tffreeze/v1/service_pb";

const CHUNK = 1 << 20; // upload chunk (WriteBlobChunk), as the C# client
const HASH_BLOCK = 4 << 20; // files are read and hashed this much at a time, never whole
const STATE_BYTES = 64 << 10;
const INLINE_GRAPH = 2 << 20;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

// The server: this page's origin, or ?server=URL (a page served elsewhere, for CORS).
const server = new URLSearchParams(location.search).get("server") || location.origin;
const token = (): string => ($("token") as HTMLInputElement).value.trim();
const withToken: Interceptor = (next) => async (req) => {
  if (token()) req.header.set("authorization", "Bearer " + token());
  return next(req);
};
// A refusal the server's door gives in plain text (a disallowed Origin or Host, a body too large)
// is shown in its own words, not as a bare "HTTP 403".
const HTTP_CODES: Record<number, Code> = {
  401: Code.Unauthenticated,
  403: Code.PermissionDenied,
  413: Code.ResourceExhausted,
  415: Code.InvalidArgument,
};
const explainedFetch: typeof fetch = async (input, init) => {
  const response = await fetch(input, init);
  if (!response.ok && (response.headers.get("content-type") || "").startsWith("text/plain")) {
    const text = (await response.text()).trim();
    throw new ConnectError(text || `HTTP ${response.status}`, HTTP_CODES[response.status] ?? Code.Unknown);
  }
  return response;
};
const client = createClient(
  FreezeService,
  createGrpcWebTransport({ baseUrl: server, interceptors: [withToken], fetch: explainedFetch }),
);

type Local = { file: File; path: string };
let chosen: Local[] = []; // every file of the folder, path relative to it
const digests = new Map<File, { sha256: string; size: bigint }>(); // kept for the tab

// ---- display -------------------------------------------------------------------------
function showError(err: unknown): void {
  const box = $("error");
  box.hidden = false;
  if (err instanceof ConnectError) {
    const info = err.findDetails(ErrorInfoSchema)[0];
    const reason = info?.reason?.replace(/^ERROR_REASON_/, "");
    // one line as every client prints it: MESSAGE (REASON) [STATUS]
    const status = Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
    box.textContent = `${inPageWords(err.rawMessage)}${reason ? ` (${reason})` : ""} [${status}]`;
    const candidates = (info?.metadata?.candidates || "").split(",").filter(Boolean);
    if (candidates.length) {
      const list = document.createElement("ul");
      list.id = "candidates";
      for (const c of candidates) {
        const li = document.createElement("li");
        li.textContent = c;
        list.append(li);
      }
      box.append(list);
    }
  } else {
    box.textContent = String(err instanceof Error ? err.message : err);
  }
}

// The server words messages in request terms (options.outputs, SOURCE): say them as this page
// does, its fields by their labels, the options it has no field for as the command line's flag.
const PAGE_FIELDS = new Set(["outputs", "inputs", "bind", "step", "optimize", "verify", "target", "format"]);
const FREEZE_FLAGS_NOT_HERE = new Set(["input-shape", "graph", "signature", "tag", "ema", "var-map",
                                       "include-variables", "exclude-variables"]);
function inPageWords(text: string): string {
  const said = new Set<string>();
  return text
    // A freeze option the server names by its flag (a conversion's "--input-shape NAME=D1,D2"):
    // a field of this page by its label, one the page lacks said once to be the command line's.
    // (Other flags, the server's or the clients' connection flags, are named as they are.)
    .replace(/(^|[\s(])--([a-z][a-z-]*)((?: [^\s;)]*=[^\s;)]*)?)/g, (m: string, pre: string, f: string, arg: string) => {
      if (PAGE_FIELDS.has(f)) return `${pre}the "${f}" field${arg ? ` (${arg.trim()})` : ""}`;
      if (!FREEZE_FLAGS_NOT_HERE.has(f) || said.has(f)) return m;
      said.add(f);
      return `${m} (a command-line option of the clients; this page has no field for it)`;
    })
    .replace(/\boptions\.([a-z_]+)/g, (_m, f: string) =>
      PAGE_FIELDS.has(f) ? `the "${f}" field` : `--${f.replace(/_/g, "-").replace(/^tags$/, "tag").replace(/^input-shapes$/, "input-shape")} (a command-line option; this page has no field for it)`)
    .replace(/,? ?or upload the graph separately and name it in graph_path \([^)]*\)/g,
             " (this page cannot take a separate graph file: freeze it with a client's --graph FILE)")
    .replace(/\bname it in graph_path\b/g, "give it with a client's --graph FILE (this page has no field for it)")
    .replace(/\bgraph_path\b/g, "--graph (a command-line option; this page has no field for it)")
    .replace(/Pass one of them as SOURCE\.?/g, "Choose one of them instead.")
    .replace(/pass its folder as SOURCE/g, "choose its folder")
    .replace(/\bSOURCE\b/g, "the chosen folder");
}

function clearError(): void {
  const box = $("error");
  box.hidden = true;
  box.textContent = "";
}

let phase = { name: "", started: 0 };
function progress(name: string, done: number, total: number, detail = ""): void {
  const now = performance.now();
  if (name !== phase.name) phase = { name, started: now };
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const bar = $("progress") as HTMLProgressElement;
  bar.value = frac;
  bar.dataset.phase = name;
  let text = `${name} ${Math.round(frac * 100)}%`;
  if (name === "upload" && total > 0) {
    const seconds = Math.max((now - phase.started) / 1000, 1e-3);
    const rate = done / seconds;
    const left = rate > 0 ? (total - done) / rate : 0;
    text += ` ${(done / 2 ** 20).toFixed(1)}/${(total / 2 ** 20).toFixed(1)} MiB, ${(rate / 2 ** 20).toFixed(1)} MiB/s, ${Math.round(left)} s left`;
  }
  $("progress-text").textContent = text + (detail ? ` — ${detail}` : "");
}

function shape(t: { shape?: { values: { kind: { case?: string; value?: unknown } }[] } }): string {
  if (!t.shape) return "?";
  return "[" + t.shape.values.map((v) => String(v.kind.value)).join(", ") + "]";
}

function fillTable(id: string, rows: TensorInfo[]): void {
  const body = $(id).querySelector("tbody") as HTMLTableSectionElement;
  body.replaceChildren();
  for (const t of rows) {
    const tr = document.createElement("tr");
    for (const cell of [t.name, t.dtype, shape(t), t.reason]) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.append(td);
    }
    body.append(tr);
  }
}

// ---- the folder ----------------------------------------------------------------------
function relative(file: File): string {
  const rel = file.webkitRelativePath || file.name;
  const parts = rel.split("/");
  return parts.length > 1 ? parts.slice(1).join("/") : rel; // without the chosen folder's own name
}

$("source").addEventListener("change", () => {
  const input = $("source") as HTMLInputElement;
  chosen = Array.from(input.files || [])
    .map((file) => ({ file, path: relative(file) }))
    .filter((f) => !f.path.split("/").some((part) => part.startsWith(".")) && f.path.split("/").length <= 7);
  $("chosen").textContent = `${chosen.length} file(s)`;
  clearError();
});

function optionText() {
  const value = (id: string) => ($(id) as HTMLInputElement).value.trim();
  const checked = (id: string) => ($(id) as HTMLInputElement).checked;
  return create(OptionTextSchema, {
    outputs: value("opt-outputs"),
    inputs: value("opt-inputs"),
    step: value("opt-step"),
    // NAME=VALUE pairs, apart by spaces or commas (a comma followed by the next NAME=)
    bind: value("opt-bind").split(/\s+|,(?=\s*[A-Za-z_][\w/.:-]*=)/).filter(Boolean),
    optimize: checked("opt-optimize"),
    verify: checked("opt-verify"),
    target: value("opt-target"),
    format: value("opt-format"),
  });
}

async function plan(): Promise<{ plan: PlanFreezeResponse; files: Local[] }> {
  if (!chosen.length) throw new Error("choose a checkpoint folder first (a Saver directory or a SavedModel)");
  const stateFiles: Record<string, string> = {};
  for (const f of chosen) {
    if (f.path.split("/").pop() === "checkpoint" && f.file.size <= STATE_BYTES) stateFiles[f.path] = await f.file.text();
  }
  const answer = await client.planFreeze({
    files: chosen.map((f) => ({ path: f.path, sizeBytes: BigInt(f.file.size) })),
    stateFiles,
    options: optionText(),
  });
  const byPath = new Map(chosen.map((f) => [f.path, f]));
  const files = answer.files.map((p) => {
    const local = byPath.get(p.localPath);
    if (!local) throw new Error(`the server asked for ${p.localPath}, which is not in the folder`);
    return { file: local.file, path: p.path };
  });
  return { plan: answer, files };
}

async function digestOf(file: File, onBytes: (n: number) => void): Promise<{ sha256: string; size: bigint }> {
  const known = digests.get(file);
  if (known) return known;
  const h = sha256.create();
  for (let offset = 0; offset < file.size; offset += HASH_BLOCK) {
    h.update(new Uint8Array(await file.slice(offset, offset + HASH_BLOCK).arrayBuffer()));
    onBytes(Math.min(HASH_BLOCK, file.size - offset));
  }
  const hex = Array.from(h.digest(), (b) => b.toString(16).padStart(2, "0")).join("");
  const digest = { sha256: hex, size: BigInt(file.size) };
  digests.set(file, digest);
  return digest;
}

/** Hash the chosen files, upload those the server lacks (resumable chunks); the SourceFiles. */
async function upload(files: Local[]) {
  const total = files.reduce((n, f) => n + f.file.size, 0);
  let hashed = 0;
  const sources: SourceFile[] = [];
  for (const f of files) {
    const d = await digestOf(f.file, (n) => progress("hash", (hashed += n), total, f.path));
    sources.push(create(SourceFileSchema, { path: f.path, digest: create(DigestSchema, { sha256: d.sha256, sizeBytes: d.size }) }));
  }
  const { missing } = await client.findMissingBlobs({ blobs: sources.map((s) => s.digest!) });
  const wanted = new Set(missing.map((d) => d.sha256));
  const todo = files.filter((f, i) => wanted.delete(sources[i].digest!.sha256));
  const bytes = todo.reduce((n, f) => n + f.file.size, 0);
  let sent = 0;
  for (const f of todo) {
    const d = digests.get(f.file)!;
    const uploadId = crypto.randomUUID().replace(/-/g, "");
    let offset = 0n;
    let tries = 0;
    for (;;) {
      const start = Number(offset);
      const data = new Uint8Array(await f.file.slice(start, start + CHUNK).arrayBuffer());
      try {
        const reply = await client.writeBlobChunk({
          digest: { sha256: d.sha256, sizeBytes: d.size },
          offset,
          data,
          finishWrite: start + data.length >= f.file.size,
          uploadId,
        });
        progress("upload", sent + Number(reply.committedSize), bytes, f.path);
        if (reply.complete) break;
        offset = reply.committedSize; // resume where the server is
        tries = 0;
      } catch (err) {
        if (!(err instanceof ConnectError) || ++tries > 5) throw err;
        const committed = err.findDetails(ErrorInfoSchema)[0]?.metadata?.committed_size;
        if (err.code === Code.FailedPrecondition && committed !== undefined) {
          offset = BigInt(committed); // the chunk arrived before the connection dropped: go on from there
        } else if (err.code === Code.Unavailable) {
          await new Promise((r) => setTimeout(r, 500 * tries)); // a dropped connection: ask again
        } else {
          throw err;
        }
      }
    }
    sent += f.file.size;
  }
  progress("upload", bytes, bytes);
  return sources;
}

// ---- inspect and freeze --------------------------------------------------------------
let busy = false;
async function run(work: () => Promise<void>): Promise<void> {
  if (busy) return;
  busy = true;
  clearError();
  for (const id of ["inspect", "freeze"]) ($(id) as HTMLButtonElement).disabled = true;
  try {
    await work();
  } catch (err) {
    showError(err);
    const stopped = " — stopped: see the error below"; // not left at its last percent, and said once
    const text = $("progress-text").textContent || "";
    if (!text.endsWith(stopped)) $("progress-text").textContent = text + stopped;
  } finally {
    busy = false;
    for (const id of ["inspect", "freeze"]) ($(id) as HTMLButtonElement).disabled = false;
    document.body.dataset.state = $("error").hidden ? "done" : "error";
  }
}

$("inspect").addEventListener("click", () =>
  run(async () => {
    document.body.dataset.state = "busy";
    const { plan: p, files } = await plan();
    const sources = await upload(files);
    const answer = await client.inspect({ files: sources, options: p.options, plan: p });
    fillTable("inputs", answer.inputs);
    fillTable("outputs", answer.outputs);
    const cands = answer.candidates.map((c) => `${c.name} ${c.dtype} ${shape(c)} — ${c.reason}`);
    $("inspect-candidates").textContent = cands.join("\n");
    $("report").textContent = answer.rendered?.text || "";
    progress("inspect", 1, 1);
  }),
);

$("freeze").addEventListener("click", () =>
  run(async () => {
    document.body.dataset.state = "busy";
    const { plan: p, files } = await plan();
    const sources = await upload(files);
    let graph: Uint8Array | undefined;
    let manifest: Uint8Array | undefined;
    let result;
    for await (const ev of client.freeze({ files: sources, options: p.options, plan: p, inlineGraphBytes: BigInt(INLINE_GRAPH) })) {
      const e = ev.event;
      if (e.case === "progress") progress("freeze", e.value.fraction, 1, e.value.message);
      else if (e.case === "graph") graph = e.value;
      else if (e.case === "manifest") manifest = e.value;
      else if (e.case === "result") result = e.value;
    }
    if (!result || !manifest) throw new Error("the server ended the freeze without a result");
    if (!graph) graph = await download(result.sha256, result.sizeBytes);
    fillTable("inputs", result.inputs);
    fillTable("outputs", result.outputs);
    const ext = result.format === 2 ? "onnx" : result.format === 3 ? "tflite" : "pb";
    offer("download-pb", graph, `model.${ext}`);
    offer("download-manifest", manifest, "model.json");
    $("report").textContent = new TextDecoder().decode(manifest);
    progress("freeze", 1, 1, `${result.sha256.slice(0, 12)}, ${result.sizeBytes} bytes`);
    if (result.warnings.length) // in view, not only inside the manifest below (an EMA checkpoint's, ...)
      $("progress-text").textContent += ` — warning: ${result.warnings.map(inPageWords).join("; warning: ")}`;
  }),
);

async function download(sha: string, size: bigint): Promise<Uint8Array> {
  const out = new Uint8Array(Number(size));
  let got = 0;
  for await (const piece of client.downloadBlob({ digest: { sha256: sha, sizeBytes: size } })) {
    out.set(piece.data, Number(piece.offset));
    got += piece.data.length;
    progress("download", got, Number(size));
  }
  return out;
}

function offer(id: string, data: Uint8Array, name: string): void {
  const a = $(id) as HTMLAnchorElement;
  if (a.href.startsWith("blob:")) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([data], { type: "application/octet-stream" }));
  a.download = name;
  a.hidden = false;
}

// The token, entered once, is kept for the tab.
const tokenInput = $("token") as HTMLInputElement;
tokenInput.value = sessionStorage.getItem("tffreeze-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("tffreeze-token", tokenInput.value.trim()));
$("server").textContent = server;
$("not-loaded").hidden = true; // index.html shows it until this script runs
document.body.dataset.state = "ready";
