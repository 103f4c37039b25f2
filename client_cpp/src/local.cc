// This user's local server (tffreeze_api/localserver.py describes its folder): used when no
// --server and no $TFFREEZE_SERVER are given. A running one is found through server.info;
// otherwise `tffreeze local-server start` (the Python client owns starting it, under a lock
// shared with every client) is run, and server.info read again.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tffreeze/client.h"

namespace fs = std::filesystem;

namespace tffreeze {
namespace {

std::string LocalDir() {
  const char* value = std::getenv("TFFREEZE_CACHE_DIR");
  if (value && *value) {
    std::string v = value;
    if (v != "off" && v != "0" && v != "none") return (fs::absolute(v) / "local").string();
  }
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  fs::path base = xdg && *xdg ? fs::path(xdg) : fs::path(home ? home : "/") / ".cache";
  return (fs::absolute(base) / "tffreeze" / "local").string();
}

// server.info of a live server, or empty.
std::map<std::string, std::string> Running(const std::string& dir) {
  std::map<std::string, std::string> info;
  std::ifstream in(fs::path(dir) / "server.info");
  std::string line;
  while (std::getline(in, line)) {
    auto space = line.find(' ');
    if (space != std::string::npos) info[line.substr(0, space)] = line.substr(space + 1);
  }
  if (!info.count("pid") || !info.count("grpc") || !info.count("token-file")) return {};
  std::ifstream cmdline("/proc/" + info["pid"] + "/cmdline", std::ios::binary);
  std::string cmd((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
  std::error_code ec;
  if (cmd.find("tffreeze") == std::string::npos || info["grpc"].rfind("unix:", 0) != 0 ||
      !fs::exists(info["grpc"].substr(5), ec))
    return {};
  return info;
}

void StartLocal() {
  const char* command = std::getenv("TFFREEZE_COMMAND");
  std::string program = command && *command ? command : "tffreeze";
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
                                   "` command (the Python client: `pip install -e client_py server`; or set "
                                   "$TFFREEZE_COMMAND). Or pass --server HOST:PORT / set $TFFREEZE_SERVER");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error("UNAVAILABLE", "the local server did not start (`" + program +
                                   " local-server start` failed; its message is above)");
}

}  // namespace

LocalServer FindLocalServer() {
  std::string dir = LocalDir();
  auto info = Running(dir);
  if (info.empty()) {
    StartLocal();
    info = Running(dir);
    if (info.empty())
      throw Error("UNAVAILABLE", "the local server started but " + (fs::path(dir) / "server.info").string() +
                                     " does not name a running one");
  }
  std::ifstream token(info["token-file"]);
  LocalServer out;
  if (!(token >> out.token)) throw Error("UNAVAILABLE", "cannot read the local server's token " + info["token-file"]);
  out.target = info["grpc"];
  return out;
}

}  // namespace tffreeze
