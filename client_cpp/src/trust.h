// The trust rules of tffreeze_api/localserver.py (local.cc implements them), for the other
// readers of $TFFREEZE_CACHE_DIR: the digest cache (listing.cc) is checked by the same rules
// as the local server's folder, with its own words and a folder mode of at most 0755.
#pragma once

#include <sys/types.h>

#include <string>

namespace tffreeze {
namespace trust {

struct Rules {
  std::string label;   // "the local server's folder"
  std::string fix;     // the sentence that ends each message (starts upper case)
  mode_t mask;         // mode bits the folder may not have
  std::string risk;    // what another user's folder would mean (a sentence)
  std::string remake;  // why removing an entry is harmless
};

extern const Rules kLocal;
extern const Rules kCache;

// `folder` (absolute) checked by `rules` (the folders above it, then it) and opened with
// O_NOFOLLOW; made first (mode 0700, missing folders above it too) when `make`. -1 when it is
// missing (or cannot be made). Throws Error FAILED_PRECONDITION when it could be another user's.
int OpenOwnFolder(const std::string& folder, const Rules& rules, bool make);

// The regular file `name` in a folder opened by OpenOwnFolder: opened with O_NOFOLLOW relative
// to it, then fstat: this user's, not writable by others. -1 when there is none; throws
// FAILED_PRECONDITION otherwise.
int OpenIn(int dirfd, const std::string& folder, const std::string& name, const Rules& rules);

}  // namespace trust
}  // namespace tffreeze
