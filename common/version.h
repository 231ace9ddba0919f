// simprov's version for --version: the CMake project version and, when built
// from a git checkout, the commit (generated at build time by
// cmake/version.cmake).
#ifndef SIMPROV_COMMON_VERSION_H_
#define SIMPROV_COMMON_VERSION_H_

namespace simprov {

// E.g. "0.1.0 (git 1a2b3c4d5e6f)" or "0.1.0" outside git.
extern const char kVersion[];

}  // namespace simprov

#endif  // SIMPROV_COMMON_VERSION_H_
