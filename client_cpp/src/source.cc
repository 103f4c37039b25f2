// Which files of SOURCE to upload: tffreeze_api/layout.py and tffreeze/source.py (the
// Python client's rules) in C++, so every client uploads and names the same checkpoint.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "sha256.h"
#include "tffreeze/client.h"

namespace fs = std::filesystem;

namespace tffreeze {
namespace {

const char* kNotFound = "ERROR_REASON_CHECKPOINT_NOT_FOUND";
const int kNestedDepth = 3;

struct Ckpt {
  std::string prefix, index, meta;
  std::vector<std::string> data;
};

std::optional<int64_t> StepOf(const std::string& prefix) {
  static const std::regex step_re("-(\\d+)$");
  std::string base = prefix.substr(prefix.rfind('/') == std::string::npos ? 0 : prefix.rfind('/') + 1);
  std::smatch m;
  if (std::regex_search(base, m, step_re)) return std::stoll(m[1]);
  return std::nullopt;
}

std::string Basename(std::string path) {
  std::replace(path.begin(), path.end(), '\\', '/');
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Sort key: checkpoints without a step first, then by step, then by prefix.
std::tuple<bool, int64_t, std::string> OrderKey(const Ckpt& c) {
  auto step = StepOf(c.prefix);
  return {step.has_value(), step.value_or(0), c.prefix};
}

const std::regex& DataRe() {
  static const std::regex re("^(.+)\\.data-(\\d{5})-of-(\\d{5})$");
  return re;
}

std::map<std::string, Ckpt> FindCheckpoints(std::vector<std::string> paths) {
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  std::map<std::string, Ckpt> found;
  for (const auto& p : paths)
    if (EndsWith(p, ".index")) {
      std::string prefix = p.substr(0, p.size() - 6);
      found[prefix] = Ckpt{prefix, p, "", {}};
    }
  for (const auto& p : paths) {
    std::smatch m;
    if (std::regex_match(p, m, DataRe()) && found.count(m[1])) found[m[1]].data.push_back(p);
    else if (EndsWith(p, ".meta") && found.count(p.substr(0, p.size() - 5))) found[p.substr(0, p.size() - 5)].meta = p;
  }
  return found;
}

std::string LatestInState(const std::string& text) {
  static const std::regex state_re("^\\s*(model_checkpoint_path|all_model_checkpoint_paths)\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"");
  std::istringstream in(text);
  std::string line, latest;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, state_re) || m[1] != "model_checkpoint_path") continue;
    std::string value = m[2], out;
    for (size_t i = 0; i < value.size(); i++) {  // the escapes a state file holds: \\ and \"
      if (value[i] == '\\' && i + 1 < value.size()) out.push_back(value[++i]);
      else out.push_back(value[i]);
    }
    latest = out;
  }
  return latest;
}

std::string Join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); i++) out += (i ? sep : "") + items[i];
  return out;
}

struct Selection {
  Ckpt checkpoint;
  std::vector<std::string> warnings;
};

Selection Select(const std::vector<std::string>& paths, const std::optional<std::string>& state,
                 std::optional<int64_t> step, const std::string& prefix, const std::string& where) {
  auto found = FindCheckpoints(paths);
  std::vector<Ckpt> ordered;
  for (auto& kv : found) ordered.push_back(kv.second);
  std::sort(ordered.begin(), ordered.end(), [](const Ckpt& a, const Ckpt& b) { return OrderKey(a) < OrderKey(b); });
  std::vector<std::string> available;
  for (auto& c : ordered) available.push_back(c.prefix);
  Selection sel;
  if (found.empty()) {
    for (const auto& p : paths)
      if (EndsWith(p, ".h5") || EndsWith(p, ".hdf5") || EndsWith(p, ".keras"))
        throw Error("FAILED_PRECONDITION", p + " is a Keras model/weights file, not a TensorFlow graph checkpoint. "
                    "Export a SavedModel instead (model.export(DIR) in Keras 3, tf.saved_model.save(model, DIR)) and "
                    "freeze that directory. (in " + where + ")", "ERROR_REASON_GRAPHLESS_FORMAT");
    std::vector<std::string> metas;
    for (const auto& p : paths)
      if (EndsWith(p, ".meta") && metas.size() < 3) metas.push_back(p);
    std::string hint = metas.empty()
        ? " Expected files written by tf.train.Saver: PREFIX.index, PREFIX.data-00000-of-00001 and PREFIX.meta."
        : " Found " + Join(metas, ", ") + " but no .index file: upload the whole Saver output "
          "(PREFIX.index, PREFIX.data-*, PREFIX.meta).";
    throw Error("NOT_FOUND", "no checkpoint found in the upload (" + std::to_string(paths.size()) + " files)." + hint +
                " (in " + where + ")", kNotFound);
  }
  const Ckpt* chosen = nullptr;
  if (!prefix.empty()) {
    std::string want = prefix;
    while (!want.empty() && want.front() == '/') want.erase(0, 1);
    while (!want.empty() && want.back() == '/') want.pop_back();
    if (found.count(want)) chosen = &found[want];
    for (auto& c : ordered)
      if (!chosen && Basename(c.prefix) == Basename(want)) chosen = &c;
    if (!chosen)
      throw Error("NOT_FOUND", "checkpoint prefix '" + prefix + "' is not in the upload; available: " +
                  Join(available, ", ") + " (in " + where + ")", kNotFound);
  } else if (step) {
    for (auto& c : ordered)
      if (StepOf(c.prefix) == step) chosen = &c;
    if (!chosen) {
      std::vector<std::string> steps;
      for (auto& c : ordered)
        if (StepOf(c.prefix)) steps.push_back(std::to_string(*StepOf(c.prefix)));
      throw Error("NOT_FOUND", "no checkpoint at global step " + std::to_string(*step) + "; steps available: " +
                  (steps.empty() ? "none (prefixes carry no -STEP suffix)" : Join(steps, ", ")) + " (in " + where + ")",
                  kNotFound);
    }
  } else {
    if (state) {
      std::string latest = LatestInState(*state);
      if (!latest.empty()) {
        for (auto it = ordered.rbegin(); it != ordered.rend() && !chosen; ++it)
          if (Basename(it->prefix) == Basename(latest)) chosen = &*it;
        if (!chosen)
          sel.warnings.push_back("the checkpoint state file names '" + latest + "', which is not in the upload; "
                                 "using the newest checkpoint present instead");
      }
    }
    if (!chosen) chosen = &ordered.back();
  }
  sel.checkpoint = *chosen;
  // Missing data shards.
  std::vector<std::string> missing;
  if (chosen->data.empty()) {
    missing.push_back(chosen->prefix + ".data-00000-of-00001");
  } else {
    int total = 0;
    std::set<int> have;
    for (const auto& d : chosen->data) {
      std::smatch m;
      std::regex_match(d, m, DataRe());
      total = std::max(total, std::stoi(m[3]));
      have.insert(std::stoi(m[2]));
    }
    char name[32];
    for (int i = 0; i < total; i++)
      if (!have.count(i)) {
        std::snprintf(name, sizeof name, ".data-%05d-of-%05d", i, total);
        missing.push_back(chosen->prefix + name);
      }
  }
  if (!missing.empty())
    throw Error("NOT_FOUND", "checkpoint '" + chosen->prefix + "' is missing data shard(s): " + Join(missing, ", ") +
                ". Upload every " + chosen->prefix + ".data-*-of-* file the Saver wrote. (in " + where + ")",
                "ERROR_REASON_SHARD_MISSING");
  if (chosen->meta.empty()) {
    // Savers called with write_meta_graph=False leave older .meta files whose graph is the same.
    const Ckpt* any = nullptr;
    for (auto& c : ordered)
      if (!c.meta.empty() && OrderKey(c) <= OrderKey(*chosen)) any = &c;
    if (!any)
      for (auto& c : ordered)
        if (!c.meta.empty() && !any) any = &c;
    if (any) {
      sel.checkpoint.meta = any->meta;
      sel.warnings.push_back("no " + chosen->prefix + ".meta; using the graph of " + any->meta);
    }
  }
  return sel;
}

LocalFile MakeLocal(const std::string& rel, const fs::path& local) {
  LocalFile f;
  f.path = rel;
  f.local = local.string();
  f.sha256 = Sha256File(f.local, &f.size);
  return f;
}

// os.walk's order: a folder's files (sorted), then its subfolders (sorted), depth first.
void WalkSavedModel(const fs::path& root, const fs::path& dir, std::vector<LocalFile>* out) {
  std::vector<fs::path> files, dirs;
  for (const auto& e : fs::directory_iterator(dir)) (e.is_directory() ? dirs : files).push_back(e.path());
  std::sort(files.begin(), files.end());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& f : files) out->push_back(MakeLocal(fs::relative(f, root).generic_string(), fs::absolute(f)));
  for (const auto& d : dirs) WalkSavedModel(root, d, out);
}

bool HoldsSavedModel(const fs::path& dir) {
  return fs::is_regular_file(dir / "saved_model.pb") || fs::is_regular_file(dir / "saved_model.pbtxt");
}

// Files below directory (at most depth folders down, hidden folders skipped), '/'-separated.
void RelativeFiles(const fs::path& root, const fs::path& dir, int level, int depth, std::vector<std::string>* out) {
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  for (const auto& p : entries) {
    if (fs::is_directory(p)) {
      if (level < depth && p.filename().string()[0] != '.') RelativeFiles(root, p, level + 1, depth, out);
    } else {
      out->push_back(fs::relative(p, root).generic_string());
    }
  }
}

std::vector<std::string> CheckpointDirs(const std::vector<std::string>& paths) {
  std::set<std::string> found;
  for (const auto& p : paths) {
    auto slash = p.rfind('/');
    std::string folder = slash == std::string::npos ? "" : p.substr(0, slash);
    std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
    if (EndsWith(name, ".index") || name == "saved_model.pb" || name == "saved_model.pbtxt") found.insert(folder);
  }
  return {found.begin(), found.end()};
}

}  // namespace

LocalCheckpoint Collect(const std::string& source_arg, std::optional<int64_t> step) {
  std::string source = source_arg;
  if (!source.empty() && source[0] == '~' && std::getenv("HOME")) source = std::getenv("HOME") + source.substr(1);
  fs::path src(source);
  LocalCheckpoint out;
  if (fs::is_directory(src) && HoldsSavedModel(src)) {
    out.directory = fs::absolute(src).string();
    WalkSavedModel(src, src, &out.files);
    return out;
  }
  std::string directory, prefix;
  if (fs::is_directory(src)) {
    directory = source;
  } else {
    directory = src.parent_path().empty() ? "." : src.parent_path().string();
    prefix = src.filename().string();
    if (!fs::is_directory(directory) || !(fs::exists(source + ".index") || fs::exists(src)))
      throw Error("NOT_FOUND", source + " is neither a checkpoint directory nor a checkpoint prefix (no " + source +
                  ".index)", kNotFound);
  }
  fs::path dir = fs::absolute(directory).lexically_normal();
  if (dir.has_filename() == false) dir = dir.parent_path();
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  if (prefix.empty() && CheckpointDirs(names).empty()) {
    // SOURCE holds no checkpoint: the only folder below it that does.
    std::vector<std::string> files;
    RelativeFiles(dir, dir, 0, kNestedDepth, &files);
    std::vector<std::string> dirs, kept;
    for (const auto& d : CheckpointDirs(files))
      if (!d.empty()) dirs.push_back(d);
    for (const auto& d : dirs) {
      bool variables_of_saved_model = false;
      for (const auto& o : dirs)
        if (d == o + "/variables") variables_of_saved_model = true;
      if (!variables_of_saved_model) kept.push_back(d);
    }
    if (kept.size() == 1) {
      LocalCheckpoint found = Collect((dir / kept[0]).string(), step);
      found.warnings.insert(found.warnings.begin(), dir.string() + " holds no checkpoint itself; using " + kept[0] +
                            "/, the only folder below it that does");
      return found;
    }
    if (kept.size() > 1) {
      std::vector<std::string> shown;
      for (size_t i = 0; i < kept.size() && i < 10; i++) shown.push_back(kept[i] + "/");
      throw Error("NOT_FOUND", dir.string() + " holds no checkpoint itself, but " + std::to_string(kept.size()) +
                  " folders below it do: " + Join(shown, ", ") + ". Pass one of them as SOURCE.", kNotFound);
    }
  }
  std::optional<std::string> state;
  if (std::find(names.begin(), names.end(), "checkpoint") != names.end()) {
    std::ifstream in(dir / "checkpoint", std::ios::binary);
    state = std::string(std::istreambuf_iterator<char>(in), {});
  }
  Selection sel = Select(names, state, step, prefix, dir.string());
  out.directory = dir.string();
  out.prefix = sel.checkpoint.prefix;
  out.warnings = sel.warnings;
  std::vector<std::string> files = {sel.checkpoint.index};
  files.insert(files.end(), sel.checkpoint.data.begin(), sel.checkpoint.data.end());
  if (!sel.checkpoint.meta.empty()) files.push_back(sel.checkpoint.meta);
  for (const auto& rel : files) out.files.push_back(MakeLocal(rel, dir / rel));
  return out;
}

}  // namespace tffreeze
