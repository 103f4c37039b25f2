// SOURCE on this machine: its listing for PlanFreeze (the server chooses the files), and
// the files' digests, kept in a stat-keyed cache so an unchanged file is never read again.
// The cache is read only once its folder and file pass the local server folder's rules
// (trust.h, kCache): otherwise it is not used (files are hashed) and one warning says why.
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>

#include "sha256.h"
#include "tffreeze/client.h"
#include "tffreeze/runner.h"
#include "trust.h"

namespace fs = std::filesystem;
namespace v1 = tffreeze::v1;

namespace tffreeze {
namespace {

const int kListDepth = 6;         // as the server's GetCapabilities says
const int kListFiles = 10000;
const int64_t kStateBytes = 64 << 10;
const size_t kMaxEntries = 20000;
const double kRacySeconds = 2.0;  // a file modified this recently is hashed but not remembered
const char kDigestFile[] = "digests-cpp.tsv";

struct Closer {
  int fd;
  ~Closer() {
    if (fd >= 0) close(fd);
  }
};

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Files below root in os.walk's order (a folder's files sorted, then its subfolders sorted),
// folders starting with '.' skipped, symbolic links followed: a linked file is listed under the
// link's own name (its path below root as the walk reached it) with its target's size.
void Walk(const fs::path& root, const fs::path& dir, int level, v1::PlanFreezeRequest* request) {
  std::vector<fs::path> files, dirs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec)) {
      if (e.path().filename().string()[0] != '.' && level < kListDepth) dirs.push_back(e.path());
    } else if (e.is_regular_file(ec)) {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& f : files) {
    if (request->files_size() >= kListFiles) return;
    auto* listed = request->add_files();
    listed->set_path(f.lexically_relative(root).generic_string());
    listed->set_size_bytes(static_cast<int64_t>(fs::file_size(f, ec)));
  }
  for (const auto& d : dirs) Walk(root, d, level + 1, request);
}

// The digest cache: real path -> (size, mtime ns, inode, device, ctime ns, sha256). The ctime is what
// a file written in place with its mtime set back (tar --mtime, touch -d) does not keep.
struct Entry {
  int64_t size = 0, mtime_ns = 0, ctime_ns = 0;
  uint64_t ino = 0, dev = 0;
  std::string sha256;
};

std::string CacheDir() {
  const char* value = std::getenv("TFFREEZE_CACHE_DIR");
  if (value) {
    std::string v = value;
    return (v.empty() || v == "off" || v == "0" || v == "none") ? "" : v;
  }
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  if (xdg && *xdg) return (fs::path(xdg) / "tffreeze").string();
  return home ? (fs::path(home) / ".cache" / "tffreeze").string() : "";
}

// The words every client says for a file (a folder: listed) the user may not read: the chmod that
// fixes it, or, for another user's, its owner (chmod is not this user's to run). cache.py's unreadable.
std::string Unreadable(const std::string& path, bool folder) {
  const std::string verb = folder ? "list" : "read", mode = folder ? "u+rx" : "u+r";
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && st.st_uid != geteuid()) {
    struct passwd pw, *found = nullptr;
    std::vector<char> buf(16384);
    std::string who = getpwuid_r(st.st_uid, &pw, buf.data(), buf.size(), &found) == 0 && found
                          ? std::string(found->pw_name) + " (uid " + std::to_string(st.st_uid) + ")"
                          : "uid " + std::to_string(st.st_uid);
    return "cannot " + verb + " " + path + ": permission denied; it belongs to another user, " + who +
           ": ask them to make it readable, or freeze a copy you can read";
  }
  return "cannot " + verb + " " + path + ": permission denied; make it readable (chmod " + mode + " " + path +
         "), or freeze a copy you can read";
}

class Digests {
 public:
  std::string Get(const std::string& path, int64_t* size) {
    std::lock_guard<std::mutex> lock(mu_);
    Load();
    std::error_code ec;
    std::string real = fs::canonical(path, ec).string();
    if (ec) throw Error("NOT_FOUND", "cannot read " + path);
    if (access(real.c_str(), R_OK) != 0 && errno == EACCES) throw Error("PERMISSION_DENIED", Unreadable(path, false));
    Entry now;
    if (!Stamp(real, &now)) throw Error("NOT_FOUND", "cannot read " + path);
    auto it = entries_.find(real);
    if (it != entries_.end() && it->second.size == now.size && it->second.mtime_ns == now.mtime_ns &&
        it->second.ino == now.ino && it->second.dev == now.dev && it->second.ctime_ns == now.ctime_ns) {
      *size = now.size;
      return it->second.sha256;
    }
    now.sha256 = Sha256File(real, size);
    Entry after;
    if (Stamp(real, &after) && after.size == now.size && after.mtime_ns == now.mtime_ns &&
        after.ctime_ns == now.ctime_ns &&
        static_cast<double>(std::time(nullptr)) - static_cast<double>(now.mtime_ns) / 1e9 > kRacySeconds &&
        !file_.empty()) {
      entries_[real] = now;
      dirty_ = true;
    }
    return now.sha256;
  }

  // A file this process just wrote and checked against sha256 (the frozen graph): remembered
  // at its current stat, however recent, so an unchanged re-freeze does not read it again.
  void Remember(const std::string& path, const std::string& sha256) {
    std::lock_guard<std::mutex> lock(mu_);
    Load();
    std::error_code ec;
    std::string real = fs::canonical(path, ec).string();
    Entry now;
    if (ec || file_.empty() || !Stamp(real, &now)) return;
    now.sha256 = sha256;
    entries_[real] = now;
    dirty_ = true;
  }

  void Save() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dirty_ || file_.empty()) return;
    std::ostringstream out;
    size_t skip = entries_.size() > kMaxEntries ? entries_.size() - kMaxEntries : 0;
    for (const auto& [path, e] : entries_) {
      if (skip > 0 && skip--) continue;
      out << e.sha256 << '\t' << e.size << '\t' << e.mtime_ns << '\t' << e.ino << '\t' << e.dev << '\t' << e.ctime_ns
          << '\t' << path << '\n';
    }
    // A new 0600 file (O_EXCL, O_NOFOLLOW) in the checked folder, renamed into place; a failed
    // write costs a re-hash next time, nothing else.
    int dir = -1;
    try {
      dir = trust::OpenOwnFolder(dir_, trust::kCache, true);
    } catch (const Error& e) {
      Distrust(e);
      return;
    }
    if (dir < 0) return;
    Closer held{dir};
    std::string tmp = std::string(".") + kDigestFile + "." + std::to_string(getpid()) + ".part";
    unlinkat(dir, tmp.c_str(), 0);
    int fd = openat(dir, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return;
    std::string data = out.str();
    bool ok = true;
    for (size_t done = 0; done < data.size();) {
      ssize_t n = write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ok = false;
        break;
      }
      done += static_cast<size_t>(n);
    }
    ok = close(fd) == 0 && ok;
    if (ok && renameat(dir, tmp.c_str(), dir, kDigestFile) == 0) {
      dirty_ = false;
      return;
    }
    unlinkat(dir, tmp.c_str(), 0);
  }

 private:
  static bool Stamp(const std::string& path, Entry* e) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return false;
    e->size = st.st_size;
    e->mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    e->ino = st.st_ino;
    e->dev = st.st_dev;
    e->ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    return true;
  }

  // The cache folder failed a check: the cache is not used by this process; one warning.
  void Distrust(const Error& e) {
    if (!file_.empty()) std::cerr << "tffreeze-cpp: warning: the cache is not used: " << e.what() << std::endl;
    file_.clear();
    entries_.clear();
    dirty_ = false;
  }

  void Load() {
    if (loaded_) return;
    loaded_ = true;
    std::string dir = CacheDir();
    if (dir.empty()) return;
    dir_ = fs::absolute(dir).lexically_normal().string();
    file_ = (fs::path(dir_) / kDigestFile).string();
    std::string text;
    try {
      int folder = trust::OpenOwnFolder(dir_, trust::kCache, false);
      if (folder < 0) return;
      Closer held{folder};
      int fd = trust::OpenIn(folder, dir_, kDigestFile, trust::kCache);
      if (fd < 0) return;
      Closer file{fd};
      char buf[65536];
      for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<size_t>(n));
      }
    } catch (const Error& e) {
      Distrust(e);
      return;
    }
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      Entry e;
      std::string path;
      if (!(fields >> e.sha256 >> e.size >> e.mtime_ns >> e.ino >> e.dev >> e.ctime_ns)) continue;
      fields.get();
      std::getline(fields, path);
      if (e.sha256.size() == 64 && !path.empty()) entries_[path] = e;
    }
  }

  std::mutex mu_;
  bool loaded_ = false, dirty_ = false;
  std::string dir_, file_;
  std::map<std::string, Entry> entries_;
};

Digests& Cache() {
  static Digests digests;
  return digests;
}

}  // namespace

static std::string MissingSource(const std::string& source) {
  std::string bare = source;
  while (!bare.empty() && bare.back() == '/') bare.pop_back();
  if (bare.empty()) bare = source;
  auto slash = bare.rfind('/');
  std::string folder = slash == std::string::npos ? "" : (slash == 0 ? "/" : bare.substr(0, slash));
  std::string name = slash == std::string::npos ? bare : bare.substr(slash + 1);
  static const std::regex checkpoint_file(R"(\.(index|meta|data-\d+-of-\d+)$)");
  std::set<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(folder.empty() ? "." : folder, ec), end; !ec && it != end; it.increment(ec)) {
    std::string e = it->path().filename().string();
    if (e.empty() || e[0] == '.') continue;
    names.insert(e);
    names.insert(std::regex_replace(e, checkpoint_file, ""));
  }
  std::vector<std::string> close;
  if (!name.empty()) close = CloseNames(name, std::vector<std::string>(names.begin(), names.end()), 1);
  if (close.empty()) return source + " does not exist";
  std::string meant = close[0];  // a checkpoint prefix PREFIX-N: the one of that prefix with the highest N
  static const std::regex numbered(R"(^(.*)-(\d+)$)");
  std::smatch m;
  if (std::regex_match(close[0], m, numbered)) {
    const std::string family = m[1].str();
    long double top = -1;
    for (const auto& n : names) {
      if (n.size() <= family.size() + 1 || n.compare(0, family.size() + 1, family + "-") != 0) continue;
      const std::string digits = n.substr(family.size() + 1);
      if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
      const long double step = std::stold(digits);
      if (step > top) top = step, meant = n;
    }
  }
  return source + " does not exist; did you mean " +
         (folder.empty() ? meant : folder.back() == '/' ? folder + meant : folder + "/" + meant) + "?";
}

Listing ListSource(const std::string& source, const std::string& graph_file) {
  Listing out;
  std::error_code ec;
  fs::path src(source);
  std::string listed = fs::is_directory(src, ec) ? source : (src.parent_path().empty() ? "." : src.parent_path().string());
  if (fs::is_directory(listed, ec) && access(listed.c_str(), R_OK | X_OK) != 0 && errno == EACCES)  // (a colleague's)
    throw Error("PERMISSION_DENIED", Unreadable(listed, true));
  if (fs::is_directory(src, ec)) {
    out.root = fs::absolute(src).string();
    Walk(out.root, out.root, 0, &out.request);
  } else {
    if (!fs::exists(src, ec) && !fs::is_regular_file(source + ".index", ec))
      throw Error("NOT_FOUND", MissingSource(source), "ERROR_REASON_CHECKPOINT_NOT_FOUND");
    fs::path dir = src.parent_path().empty() ? fs::path(".") : src.parent_path();
    out.root = fs::absolute(dir).string();
    out.request.set_prefix(src.filename().string());
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_regular_file(ec)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      auto* listed = out.request.add_files();
      listed->set_path(f.filename().string());
      listed->set_size_bytes(static_cast<int64_t>(fs::file_size(f, ec)));
    }
  }
  for (const auto& f : out.request.files()) {
    std::string name = f.path().substr(f.path().rfind('/') == std::string::npos ? 0 : f.path().rfind('/') + 1);
    if (name == "checkpoint" && f.size_bytes() <= kStateBytes) {
      const std::string path = (fs::path(out.root) / f.path()).string();
      if (access(path.c_str(), R_OK) != 0 && errno == EACCES) {
        if (!out.request.prefix().empty()) continue;  // (a checkpoint named: which is the latest does not matter)
        throw Error("PERMISSION_DENIED", Unreadable(path, false) + ". It is the state file that names the latest "
                    "checkpoint; a checkpoint named by its prefix (" + (fs::path(path).parent_path() / "PREFIX").string() +
                    ") needs none", "", {{"path", path}});
      }
      (*out.request.mutable_state_files())[f.path()] = ReadText(path);
    }
  }
  if (!graph_file.empty()) {
    if (fs::is_directory(graph_file, ec))
      throw Error("INVALID_ARGUMENT", graph_file + " is a folder: the graph option takes a file (a GraphDef or MetaGraphDef)",
                  "ERROR_REASON_GRAPH_INVALID", {{"field", "options.graph_path"}, {"flag", "--graph"}});
    if (!fs::is_regular_file(graph_file, ec))
      throw Error("NOT_FOUND", "the graph file " + graph_file + " does not exist", "ERROR_REASON_GRAPH_INVALID",
                  {{"field", "options.graph_path"}, {"flag", "--graph"}});
    out.request.set_graph_file(fs::path(graph_file).filename().string());
  }
  return out;
}

// Whether a listed file (its path relative to SOURCE's folder) is one a checkpoint or SavedModel
// is made of (the same rule in every client): an earlier graph written into SOURCE is not.
static bool CheckpointPart(const std::string& rel) {
  static const std::regex kData(R"(\.data-[0-9]{5}-of-[0-9]{5}$)");
  const size_t slash = rel.rfind('/');
  const std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
  auto ends = [&](const std::string& tail) {
    return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (name == "checkpoint" || ends(".index") || ends(".meta") || std::regex_search(name, kData) ||
      name == "saved_model.pb" || name == "saved_model.pbtxt" || name == "fingerprint.pb")
    return true;
  const std::string folders = "/" + (slash == std::string::npos ? std::string() : rel.substr(0, slash + 1));
  return folders.find("/variables/") != std::string::npos || folders.find("/assets/") != std::string::npos;
}

std::string ListedFileAt(const std::string& source, const std::string& path, const std::string& graph_file) {
  Listing listing;
  try {
    listing = ListSource(source);
  } catch (const std::exception&) {
    return "";  // the freeze lists SOURCE again and says what is wrong with it
  }
  // (shown, local): only what a checkpoint or SavedModel is made of, and the --graph file.
  std::vector<std::pair<std::string, fs::path>> files;
  for (const auto& f : listing.request.files())
    if (CheckpointPart(f.path())) files.emplace_back(f.path(), fs::path(listing.root) / f.path());
  if (!graph_file.empty()) files.emplace_back(graph_file, fs::path(graph_file));
  struct stat target {};
  const bool exists = stat(path.c_str(), &target) == 0;
  std::error_code ec;
  const fs::path absolute = fs::absolute(path, ec).lexically_normal();
  for (const auto& [shown, local] : files) {
    struct stat st {};
    if (exists && stat(local.c_str(), &st) == 0) {
      if (st.st_dev == target.st_dev && st.st_ino == target.st_ino) return shown;
    } else if (!exists && fs::weakly_canonical(absolute, ec) == fs::weakly_canonical(fs::absolute(local, ec), ec)) {
      return shown;
    }
  }
  return "";
}

std::string FileDigest(const std::string& path, int64_t* size) { return Cache().Get(path, size); }

void RememberDigest(const std::string& path, const std::string& sha256) { Cache().Remember(path, sha256); }

void SaveDigests() { Cache().Save(); }

}  // namespace tffreeze
