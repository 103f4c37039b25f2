// This user's local server (tffreeze_api/localserver.py describes its folder): used when no
// --server and no $TFFREEZE_SERVER are given. A running one is found through server.info;
// otherwise `tffreeze local-server start` (the Python client owns starting it, under a lock
// shared with every client) is run, and server.info read again.
//
// Nothing in the folder is read before the folder is checked, by the rules (and with the
// messages) of tffreeze_api/localserver.py: the folders above it cannot be changed by another
// user (owned by this user or root; sticky when group or others may write), the folder is not
// a symbolic link, is this user's (the effective uid: root too) and mode 0700, every entry in
// it is this user's and not writable by others (the token not readable either), server.info
// and the token are opened with O_NOFOLLOW relative to the folder's descriptor and checked
// again with fstat, the socket is this user's (in its own 0700 folder when it is elsewhere),
// and the server's process too. Otherwise: FAILED_PRECONDITION.
#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <vector>

#include "tffreeze/client.h"
#include "trust.h"

namespace fs = std::filesystem;

namespace tffreeze {
namespace trust {

const Rules kLocal{
    "the local server's folder",
    "Unset TFFREEZE_CACHE_DIR or point it at a folder of your own (the local server's folder must be yours alone, "
    "mode 0700, inside folders only you or root can change), or pass --server to use a server you trust",
    077,
    "Another user's server may be listening there, and it would receive your checkpoints; nothing in it was read.",
    "the local server makes what it needs anew"};
const Rules kCache{
    "the cache folder",
    "Point TFFREEZE_CACHE_DIR at a folder of your own (yours, not writable by group or others, inside folders only "
    "you or root can change), or set it to off",
    022, "Another user could have put digests or graphs of their choosing in it; nothing in it was used.",
    "the cache is made anew"};

}  // namespace trust

namespace {

using trust::Rules;

std::string Lowered(const std::string& fix) {
  return fix.empty() ? fix : std::string(1, static_cast<char>(std::tolower(static_cast<unsigned char>(fix[0])))) +
                                 fix.substr(1);
}

const std::string kFixUpper = trust::kLocal.fix;     // starts a sentence (defined above: initialised first)
const std::string kFixLower = Lowered(kFixUpper);  // follows "or"
const char kFolderLabel[] = "the local server's folder";
constexpr int kMaxLinks = 40;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

std::string LocalDir() {
  const char* value = std::getenv("TFFREEZE_CACHE_DIR");
  fs::path out;
  std::string v = value ? value : "";
  while (!v.empty() && isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
  while (!v.empty() && isspace(static_cast<unsigned char>(v.front()))) v.erase(0, 1);
  std::string low;
  for (char c : v) low += static_cast<char>(tolower(static_cast<unsigned char>(c)));
  if (!v.empty() && low != "off" && low != "0" && low != "none") {
    out = fs::absolute(v) / "local";
  } else {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    fs::path base = xdg && *xdg ? fs::path(xdg) : fs::path(home ? home : "/") / ".cache";
    out = fs::absolute(base) / "tffreeze" / "local";
  }
  std::string s = out.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

std::string Who(uid_t uid) {
  struct passwd pw, *found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found)
    return std::string(found->pw_name) + " (uid " + std::to_string(uid) + ")";
  return "uid " + std::to_string(uid);
}

std::string Mode(const struct stat& st) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return buf;
}

[[noreturn]] void Refuse(const std::string& message) { throw Error("FAILED_PRECONDITION", message); }

std::string Join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string Parent(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

bool AboveOk(const struct stat& st) {
  if (st.st_uid != geteuid() && st.st_uid != 0) return false;
  return !(st.st_mode & 022) || (st.st_mode & S_ISVTX);
}

[[noreturn]] void RefuseAbove(const std::string& folder, const std::string& label, const std::string& path,
                              const struct stat& st, bool link = false, const std::string& fix = kFixUpper) {
  std::string why = st.st_uid != geteuid() && st.st_uid != 0
                        ? std::string(link ? "it is a symbolic link owned by " : "it is owned by ") + Who(st.st_uid)
                        : "group or others may write to it and it is not sticky";
  std::string advice = fix;
  if (st.st_uid == geteuid() && !link && why.rfind("group", 0) == 0 && !fix.empty()) {  // the user's own: close it
    std::string rest = fix;
    rest[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(rest[0])));
    advice = "It is yours: chmod go-w " + path + " closes it. Or: " + rest;
  }
  Refuse(label + " " + folder + " lies in " + path + " (owner " + Who(st.st_uid) + ", mode " + Mode(st) +
         "), which another user could change: " + why + ", so they could swap the folder for one of their own. " +
         advice + ".");
}

// Rule 1: every folder a lookup of `folder` passes through (symbolic links followed) up to its
// parent. False when part of the way does not exist yet.
bool CheckParents(const std::string& folder, const std::string& label, const std::string& fix = kFixUpper) {
  std::deque<std::string> pending;
  std::stringstream split(folder);
  std::string part;
  while (std::getline(split, part, '/'))
    if (!part.empty()) pending.push_back(part);
  if (!pending.empty()) pending.pop_back();  // the folder itself: rule 2
  struct stat st;
  if (lstat("/", &st) != 0) return false;
  if (!AboveOk(st)) RefuseAbove(folder, label, "/", st, false, fix);
  std::string current = "/";
  int links = 0;
  while (!pending.empty()) {
    std::string name = pending.front();
    pending.pop_front();
    if (name.empty() || name == ".") continue;
    if (name == "..") {
      current = Parent(current);
      continue;
    }
    std::string path = Join(current, name);
    if (lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return false;
      Refuse(label + " " + folder + ": cannot check " + path + ": " + std::strerror(errno) + ". " + fix + ".");
    }
    if (S_ISLNK(st.st_mode)) {
      if (++links > kMaxLinks) Refuse(label + " " + folder + ": too many symbolic links on the way. " + fix + ".");
      if (st.st_uid != geteuid() && st.st_uid != 0) RefuseAbove(folder, label, path, st, true, fix);
      std::vector<char> buf(4096);
      ssize_t n = readlink(path.c_str(), buf.data(), buf.size() - 1);
      if (n < 0) Refuse(label + " " + folder + ": cannot read the link " + path + ". " + fix + ".");
      std::string target(buf.data(), static_cast<size_t>(n));
      if (!target.empty() && target[0] == '/') current = "/";
      std::vector<std::string> parts;
      std::stringstream t(target);
      while (std::getline(t, part, '/')) parts.push_back(part);
      pending.insert(pending.begin(), parts.begin(), parts.end());
      continue;
    }
    if (!S_ISDIR(st.st_mode)) Refuse(label + " " + folder + ": " + path + " on the way is not a folder. " + fix + ".");
    if (!AboveOk(st)) RefuseAbove(folder, label, path, st, false, fix);
    current = path;
  }
  return true;
}

// Rule 2, on an lstat (or fstat) of the folder.
void CheckFolderStat(const std::string& folder, const struct stat& st, const std::string& label,
                     const Rules& rules = trust::kLocal) {
  uid_t me = geteuid();
  const std::string& fix = rules.fix;
  if (S_ISLNK(st.st_mode)) {
    std::vector<char> buf(4096);
    ssize_t n = readlink(folder.c_str(), buf.data(), buf.size() - 1);
    std::string target = n < 0 ? "?" : std::string(buf.data(), static_cast<size_t>(n));
    Refuse(label + " " + folder + " is a symbolic link (to " + target + ", owner " + Who(st.st_uid) +
           "): it must be a real folder, which nobody else can point elsewhere. " + fix + ".");
  }
  if (!S_ISDIR(st.st_mode))
    Refuse(label + " " + folder + " is not a folder (owner " + Who(st.st_uid) + ", mode " + Mode(st) + "). " +
           fix + ".");
  if (st.st_uid != me)
    Refuse(label + " " + folder + " is not yours: it is owned by " + Who(st.st_uid) + ", mode " + Mode(st) +
           ", and you are " + Who(me) + ". " + rules.risk + " " + fix + ".");
  if ((st.st_mode & rules.mask) && rules.mask == 077)
    Refuse(label + " " + folder + " is open to other users (mode " + Mode(st) + ", owner " + Who(st.st_uid) +
           "): it must be yours alone (mode 0700). `chmod 700 " + folder + "`, or " + Lowered(fix) + ".");
  if (st.st_mode & rules.mask)
    Refuse(label + " " + folder + " is writable by other users (mode " + Mode(st) + ", owner " + Who(st.st_uid) +
           "). " + rules.risk + " `chmod go-w " + folder + "`, or " + Lowered(fix) + ".");
}

// Rules 1 and 2; false when the folder (or one above it) does not exist.
bool CheckFolder(const std::string& folder, const std::string& label) {
  if (!CheckParents(folder, label)) return false;
  struct stat st;
  if (lstat(folder.c_str(), &st) != 0) return false;
  CheckFolderStat(folder, st, label);
  return true;
}

// Rule 3 for one entry of the folder (an lstat, or an fstat of the opened file).
void CheckEntry(const std::string& folder, const std::string& name, const struct stat& st, bool secret,
                const Rules& rules = trust::kLocal) {
  std::string path = folder + "/" + name;
  std::string where = ", in " + rules.label + ", ";
  std::string fix = "Remove it (" + rules.remake + "), or " + Lowered(rules.fix) + ".";
  uid_t me = geteuid();
  if (S_ISLNK(st.st_mode))
    Refuse(path + where + "is a symbolic link (owner " + Who(st.st_uid) + "): nothing there may point elsewhere. " +
           fix);
  if (st.st_uid != me)
    Refuse(path + where + "is owned by " + Who(st.st_uid) + ", mode " + Mode(st) + ", not by you (" + Who(me) +
           "): another user could have written it. " + fix);
  if (st.st_mode & (secret ? 077 : 022))
    Refuse(path + where + "is " + (secret ? "readable or writable" : "writable") + " by other users (mode " +
           Mode(st) + ", owner " + Who(st.st_uid) + "). " + fix);
}

// The folder checked (rules 1-3) and opened; -1 when it does not exist.
int OpenFolder(const std::string& folder) {
  if (!CheckParents(folder, kFolderLabel)) return -1;
  struct stat st, opened;
  if (lstat(folder.c_str(), &st) != 0) return -1;
  CheckFolderStat(folder, st, kFolderLabel);
  int fd = open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return -1;
    Refuse(std::string(kFolderLabel) + " " + folder + " cannot be opened: " + std::strerror(errno) + ". " +
           kFixUpper + ".");
  }
  Fd held(fd);
  if (fstat(fd, &opened) != 0 || opened.st_dev != st.st_dev || opened.st_ino != st.st_ino)
    Refuse(std::string(kFolderLabel) + " " + folder + " changed while it was checked. " + kFixUpper + ".");
  CheckFolderStat(folder, opened, kFolderLabel);
  int scan = dup(fd);
  DIR* dir = scan >= 0 ? fdopendir(scan) : nullptr;
  if (!dir) {
    if (scan >= 0) close(scan);
    Refuse(std::string(kFolderLabel) + " " + folder + " cannot be listed. " + kFixUpper + ".");
  }
  try {
    while (struct dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (name == "." || name == "..") continue;
      struct stat est;
      if (fstatat(fd, name.c_str(), &est, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone since
      CheckEntry(folder, name, est, name == "token");
    }
  } catch (...) {
    closedir(dir);
    throw;
  }
  closedir(dir);
  held.fd = -1;
  return fd;
}

// The text of `name` in the opened folder: O_NOFOLLOW, then fstat: a regular file of this
// user's, not writable by others (nor readable, when secret). found=false when there is none.
std::string ReadIn(int dirfd, const std::string& folder, const std::string& name, bool secret, bool* found) {
  *found = false;
  int fd = openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return "";
    if (errno == ELOOP)
      Refuse(folder + "/" + name + ", in the local server's folder, is a symbolic link. Remove it, or " + kFixLower +
             ".");
    throw Error("UNAVAILABLE", "cannot read " + folder + "/" + name + ": " + std::strerror(errno));
  }
  Fd held(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) throw Error("UNAVAILABLE", "cannot read " + folder + "/" + name + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    Refuse(folder + "/" + name + ", in the local server's folder, is not a regular file (mode " + Mode(st) +
           "). Remove it, or " + kFixLower + ".");
  CheckEntry(folder, name, st, secret);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error("UNAVAILABLE", "cannot read " + folder + "/" + name + ": " + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1 << 20)) break;
  }
  *found = true;
  return text;
}

// Rule 4: the socket server.info names; false when it is gone.
bool CheckSocket(const std::string& folder, const std::string& target) {
  if (target.rfind("unix:", 0) != 0)
    Refuse("server.info in " + folder + " names \"" + target + "\", not a Unix socket. " + kFixUpper + ".");
  std::string path = fs::path(target.substr(5)).lexically_normal().string();
  if (Parent(path) != folder && !CheckFolder(Parent(path), "the local server's socket folder")) return false;
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return false;
  uid_t me = geteuid();
  if (!S_ISSOCK(st.st_mode) || st.st_uid != me || (st.st_mode & 022))
    Refuse("the local server's socket " + path + " is " +
           (!S_ISSOCK(st.st_mode) ? "not a socket" : st.st_uid != me ? "not yours" : "writable by others") +
           " (owner " + Who(st.st_uid) + ", mode " + Mode(st) + "): it must be a socket of yours that others cannot "
           "write. " + kFixUpper + ".");
  return true;
}

// Whether pid runs, is this user's and is a tffreeze server.
bool Alive(const std::string& pid) {
  if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) return false;
  struct stat st;
  if (stat(("/proc/" + pid).c_str(), &st) != 0 || st.st_uid != geteuid()) return false;
  std::ifstream cmdline("/proc/" + pid + "/cmdline", std::ios::binary);
  std::string cmd((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
  return cmd.find("tffreeze") != std::string::npos;
}

// server.info of a live server, or empty; FAILED_PRECONDITION before anything is read from a
// folder that could be another user's.
std::map<std::string, std::string> Running(const std::string& dir) {
  std::map<std::string, std::string> info;
  int fd = OpenFolder(dir);
  if (fd < 0) return {};
  Fd held(fd);
  bool found = false;
  std::stringstream in(ReadIn(fd, dir, "server.info", false, &found));
  if (!found) return {};
  std::string line;
  while (std::getline(in, line)) {
    auto space = line.find(' ');
    if (space != std::string::npos) info[line.substr(0, space)] = line.substr(space + 1);
  }
  if (!info.count("pid") || !info.count("grpc") || !info.count("token-file")) return {};
  if (!Alive(info["pid"]) || !CheckSocket(dir, info["grpc"])) return {};
  return info;
}

// The `tffreeze` command that starts the local server, found as `run` finds .venv:
// $TFFREEZE_COMMAND, else the checkout's .venv/bin/tffreeze (the checkout this executable
// lies in, by /proc/self/exe: client_cpp/bin/ or client_cpp/build/), else `tffreeze` on PATH.
std::string TffreezeCommand() {
  const char* command = std::getenv("TFFREEZE_COMMAND");
  if (command && *command) return command;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path dir = exe.parent_path(); !dir.empty(); dir = dir.parent_path()) {
      fs::path candidate = dir / ".venv" / "bin" / "tffreeze";
      if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
      if (dir == dir.parent_path() || dir == exe.parent_path().parent_path().parent_path().parent_path()) break;
    }
  return "tffreeze";
}

// The command's path: as given when it holds a '/', else found on PATH; empty when none.
std::string CommandPath(const std::string& command) {
  if (command.find('/') != std::string::npos) return command;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + command;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// (installation, python) of the `tffreeze` command that starts the local server, as the Python
// client names its own (the folder holding the tffreeze_server package its Python would import,
// and that Python): asked of the Python its script's first line names. Empty when it cannot tell.
std::pair<std::string, std::string> OwnInstallation() {
  std::string script = CommandPath(TffreezeCommand());
  std::ifstream in(script);
  std::string first;
  if (script.empty() || !std::getline(in, first) || first.rfind("#!", 0) != 0) return {};
  std::vector<std::string> words;
  std::stringstream split(first.substr(2));
  for (std::string w; split >> w;) words.push_back(w);
  const bool runs_python = !words.empty() && (words[0].find("python") != std::string::npos ||
                                         (words.size() > 1 && words[1].find("python") != std::string::npos));
  if (!runs_python) return {};  // a wrapper of another kind: cannot tell
  words.push_back("-c");
  words.push_back(
      "import importlib.util, os, sys\n"
      "sys.path[:] = [p for p in sys.path if p]\n"
      "spec = importlib.util.find_spec('tffreeze_server')\n"
      "print(os.path.dirname(os.path.dirname(os.path.realpath(spec.origin))) if spec and spec.origin else '')\n"
      "print(sys.executable)\n");
  int out[2];
  if (pipe(out) != 0) return {};
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return {};
  }
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 2);
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(&w[0]);
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::stringstream lines(text);
  std::string installation, python;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !std::getline(lines, installation) ||
      !std::getline(lines, python) || installation.empty())
    return {};
  return {installation, python};
}

// A running server of another installation (another checkout or environment of the same
// version) serves the call, and stderr says so, as the Python client says it.
void NoteOther(const std::map<std::string, std::string>& info) {
  auto theirs = info.find("installation");
  if (theirs == info.end() || theirs->second.empty()) return;
  auto mine = OwnInstallation();
  if (mine.first.empty()) return;
  auto python = info.find("python");
  std::string their_python = python == info.end() ? mine.second : python->second;
  if (theirs->second == mine.first && their_python == mine.second) return;
  std::cerr << "tffreeze-cpp: note: the local server running (pid " << info.at("pid")
            << ") is another installation's: " << theirs->second << " (python "
            << (python == info.end() ? "?" : python->second) << "); this one is " << mine.first << " (python "
            << mine.second << "). It serves this call. To run this installation's code instead: `tffreeze "
            << "local-server stop` (it is the one local server of your user), then call again" << std::endl;
}

void StartLocal() {
  std::string program = TffreezeCommand();
  pid_t pid = fork();
  if (pid < 0) throw Error("UNAVAILABLE", "cannot start the local server (fork failed)");
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);  // its report is for people; errors go to stderr
    if (null >= 0) dup2(null, 1);
    execlp(program.c_str(), program.c_str(), "local-server", "start", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    throw Error("UNAVAILABLE", "no --server given and no local server running; starting one needs the `" + program +
                                   "` command, looked for as $TFFREEZE_COMMAND, the checkout's .venv/bin/tffreeze "
                                   "(`make setup` makes it) and `tffreeze` on PATH (`pip install -e client_py server`). "
                                   "Or pass --server HOST:PORT / set $TFFREEZE_SERVER");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error("UNAVAILABLE", "the local server did not start (`" + program +
                                   " local-server start` failed; its message is above)");
}

}  // namespace

namespace trust {

int OpenOwnFolder(const std::string& path, const Rules& rules, bool make) {
  std::string folder = fs::absolute(path).lexically_normal().string();
  while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
  bool above = CheckParents(folder, rules.label, rules.fix);
  if (make) {
    std::error_code ec;
    if (!above) {  // what is missing is made by this user, 0755 whatever the umask (002 would make it
                   // group-writable, which the rules then refuse)
      std::vector<std::string> missing;
      for (std::string up = Parent(folder); !up.empty() && up != "/" && !fs::is_directory(up, ec); up = Parent(up))
        missing.push_back(up);
      for (auto it = missing.rbegin(); it != missing.rend(); ++it) mkdir(it->c_str(), 0755);
    }
    if (mkdir(folder.c_str(), 0700) != 0 && errno != EEXIST) return -1;
    if (!above) above = CheckParents(folder, rules.label, rules.fix);
  }
  if (!above) return -1;
  struct stat st, opened;
  if (lstat(folder.c_str(), &st) != 0) return -1;
  CheckFolderStat(folder, st, rules.label, rules);
  int fd = open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return -1;
    Refuse(rules.label + " " + folder + " cannot be opened: " + std::strerror(errno) + ". " + rules.fix + ".");
  }
  Fd held(fd);
  if (fstat(fd, &opened) != 0 || opened.st_dev != st.st_dev || opened.st_ino != st.st_ino)
    Refuse(rules.label + " " + folder + " changed while it was checked. " + rules.fix + ".");
  CheckFolderStat(folder, opened, rules.label, rules);
  held.fd = -1;
  return fd;
}

int OpenIn(int dirfd, const std::string& folder, const std::string& name, const Rules& rules) {
  int fd = openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ELOOP)
      Refuse(folder + "/" + name + ", in " + rules.label + ", is a symbolic link. Remove it, or " + Lowered(rules.fix) +
             ".");
    return -1;
  }
  Fd held(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) return -1;
  if (!S_ISREG(st.st_mode))
    Refuse(folder + "/" + name + ", in " + rules.label + ", is not a regular file (mode " + Mode(st) +
           "). Remove it, or " + Lowered(rules.fix) + ".");
  CheckEntry(folder, name, st, false, rules);
  held.fd = -1;
  return fd;
}

}  // namespace trust

namespace {
std::string used_pid;  // the local server this process's calls went to last
}  // namespace

std::string LocalServerWentAway() {
  if (used_pid.empty()) return "";
  std::map<std::string, std::string> info;
  try {
    info = Running(LocalDir());
  } catch (const Error&) {
    return "";
  }
  return info.empty() || info["pid"] != used_pid ? used_pid : "";
}

LocalServer FindLocalServer() {
  std::string dir = LocalDir();
  auto info = Running(dir);
  if (!info.empty()) NoteOther(info);
  if (info.empty()) {
    StartLocal();
    info = Running(dir);
    if (info.empty())
      throw Error("UNAVAILABLE", "the local server started but " + (fs::path(dir) / "server.info").string() +
                                     " does not name a running one");
  }
  int fd = OpenFolder(dir);
  if (fd < 0) throw Error("UNAVAILABLE", "the local server's folder " + dir + " is gone");
  Fd held(fd);
  bool found = false;
  std::stringstream token(ReadIn(fd, dir, "token", true, &found));
  LocalServer out;
  if (!found || !(token >> out.token))
    throw Error("UNAVAILABLE", "cannot read the local server's token " + dir + "/token");
  out.target = info["grpc"];
  out.pid = used_pid = info["pid"];
  return out;
}

}  // namespace tffreeze
