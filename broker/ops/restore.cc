// Restore of a backup archive (backup.h): reads untrusted bytes, so every
// field of the tar headers and the manifest is checked before it is used,
// and everything is written below a staging directory this process created
// itself, through directory descriptors (no path is ever followed through a
// symlink).
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "broker/keys/kek_rotation.h"
#include "broker/ops/backup.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/digest.h"
#include "common/sealed_box.h"

namespace simprov {
namespace {

constexpr size_t kBlock = 512;
constexpr size_t kMaxManifestBytes = 16 << 20;

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(what);
}

// A name from the archive, for an error line: printable ASCII, bounded.
std::string Printable(absl::string_view s) {
  std::string out;
  for (char c : s.substr(0, 100)) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) {
      out.push_back(c);
    } else {
      char hex[5];
      snprintf(hex, sizeof hex, "\\x%02x", u);
      out += hex;
    }
  }
  return out;
}

absl::StatusOr<uint64_t> ParseOctal(const char* p, size_t n) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < n && p[i] == ' ') ++i;
  bool any = false;
  for (; i < n && p[i] != '\0' && p[i] != ' '; ++i) {
    if (p[i] < '0' || p[i] > '7' || v >> 60 != 0) {
      return absl::InvalidArgumentError("corrupt tar header");
    }
    v = (v << 3) | static_cast<uint64_t>(p[i] - '0');
    any = true;
  }
  if (!any) return absl::InvalidArgumentError("corrupt tar header");
  return v;
}

class ArchiveReader {
 public:
  ArchiveReader(int fd, uint64_t size) : fd_(fd), left_(size) {}
  // Bytes of the archive not read yet.
  uint64_t left() const { return left_; }
  // Reads exactly n bytes; InvalidArgument "truncated" at end of file.
  absl::Status ReadExactly(void* p, size_t n) {
    char* c = static_cast<char*>(p);
    while (n > 0) {
      ssize_t r = read(fd_, c, n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        return absl::InternalError(
            absl::StrCat("cannot read the backup: ", strerror(errno)));
      }
      if (r == 0) return Malformed("the backup is truncated");
      c += r;
      n -= static_cast<size_t>(r);
      left_ -= std::min<uint64_t>(left_, static_cast<uint64_t>(r));
    }
    return absl::OkStatus();
  }

 private:
  int fd_;
  uint64_t left_;
};

absl::Status WriteAll(int fd, const char* p, size_t n,
                      const std::string& path) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Errno("cannot write", path);
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

bool SafeRelativePath(const std::string& p) {
  if (p.empty() || p[0] == '/' || p.size() >= 100) return false;
  for (char c : p) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return false;
  }
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    std::string part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

// Creates the regular file `rel` (a SafeRelativePath) below the directory
// `root`, making its parent directories (0700) on the way; never follows a
// symlink and never opens an existing file. -1 with errno set otherwise.
int CreateBelow(int root, const std::string& rel, mode_t mode) {
  int dir = dup(root);
  if (dir < 0) return -1;
  size_t start = 0;
  while (true) {
    const size_t slash = rel.find('/', start);
    if (slash == std::string::npos) break;
    const std::string part = rel.substr(start, slash - start);
    if (mkdirat(dir, part.c_str(), 0700) != 0 && errno != EEXIST) {
      close(dir);
      return -1;
    }
    const int next = openat(dir, part.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const int e = errno;
    close(dir);
    if (next < 0) {
      errno = e;
      return -1;
    }
    dir = next;
    start = slash + 1;
  }
  const int fd =
      openat(dir, rel.substr(start).c_str(),
             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  const int e = errno;
  close(dir);
  errno = e;
  return fd;
}

// The staging directory: its path, and a descriptor of the directory this
// process created there (the path is checked against it before each use).
struct Staging {
  std::string path;
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  // True while `path` still names the directory behind `fd`.
  bool Intact() const {
    struct stat st;
    return lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
           st.st_dev == dev && st.st_ino == ino;
  }
  absl::Status CheckIntact() const {
    return Intact()
               ? absl::OkStatus()
               : absl::AbortedError(absl::StrCat(
                     "the staging directory ", path,
                     " was replaced during the restore; nothing restored"));
  }
};

absl::Status CheckKekOpens(const std::string& db_path,
                           const StoreOpener& open_store,
                           const std::vector<Bytes>& keks,
                           const std::string& kek_source) {
  auto store = open_store(db_path);
  if (!store.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the backup's store does not open: ", store.status().message()));
  }
  // The first subscriber in IMSI order, if any.
  std::optional<SubscriberRecord> first;
  absl::Status s =
      (*store)->ListSubscribers("", [&first](const SubscriberRecord& r) {
        first = r;
        return false;
      });
  if (!s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the backup's store does not open: ", s.message()));
  }
  if (!first) return absl::OkStatus();
  for (const Bytes& k : keks) {
    auto plain = OpenBox(k, first->sealed_keys, ToBytes(first->imsi));
    if (plain.ok()) {
      SecureWipe(*plain);
      return absl::OkStatus();
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("the KEK in ", kek_source,
                   " does not open the backup's sealed keys (wrong KEK?)"));
}

struct Extracted {
  uint64_t size = 0;
  std::string sha256;
};

struct ManifestEntry {
  std::string path;
  uint64_t size = 0;
  std::string sha256;
};

struct Manifest {
  std::string created_at;
  bool kek_included = false;
  std::vector<ManifestEntry> entries;
};

bool IsLowerHex(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// The manifest, every field of the expected JSON type; never throws.
absl::StatusOr<Manifest> ParseManifest(const std::string& text) {
  const nlohmann::json m = nlohmann::json::parse(text, nullptr, false);
  auto corrupt = [](absl::string_view what) {
    return Malformed(absl::StrCat("the backup's manifest is corrupt: ", what));
  };
  if (m.is_discarded() || !m.is_object()) return corrupt("not a JSON object");
  auto field = [&m](const char* key) -> const nlohmann::json* {
    auto it = m.find(key);
    return it == m.end() ? nullptr : &*it;
  };
  const nlohmann::json* format = field("format");
  if (format == nullptr || !format->is_string() ||
      format->get_ref<const std::string&>() != "simprov-backup") {
    return corrupt("\"format\" is not \"simprov-backup\"");
  }
  const nlohmann::json* version = field("version");
  if (version == nullptr || !version->is_number_integer()) {
    return corrupt("\"version\" is not a number");
  }
  if (version->get<int64_t>() != kBackupFormatVersion) {
    return Malformed(
        absl::StrCat("the backup is format version ", version->get<int64_t>(),
                     "; this simprov reads version ", kBackupFormatVersion));
  }
  Manifest out;
  const nlohmann::json* created = field("created_at");
  if (created == nullptr || !created->is_string()) {
    return corrupt("\"created_at\" is not a string");
  }
  out.created_at = Printable(created->get_ref<const std::string&>());
  const nlohmann::json* kek = field("kek");
  if (kek == nullptr || !kek->is_string() ||
      (*kek != "included" && *kek != "external")) {
    return corrupt("\"kek\" is neither \"included\" nor \"external\"");
  }
  out.kek_included = *kek == "included";
  const nlohmann::json* entries = field("entries");
  if (entries == nullptr || !entries->is_array()) {
    return corrupt("\"entries\" is not a list");
  }
  std::set<std::string> listed;
  for (size_t i = 0; i < entries->size(); ++i) {
    const nlohmann::json& e = (*entries)[i];
    const std::string where = absl::StrCat("entry ", i + 1);
    if (!e.is_object())
      return corrupt(absl::StrCat(where, " is not an object"));
    auto path = e.find("path");
    if (path == e.end() || !path->is_string()) {
      return corrupt(absl::StrCat(where, ": \"path\" is not a string"));
    }
    ManifestEntry entry;
    entry.path = path->get<std::string>();
    if (!SafeRelativePath(entry.path)) {
      return corrupt(
          absl::StrCat(where, ": unsafe path \"", Printable(entry.path), "\""));
    }
    auto size = e.find("size");
    if (size == e.end() || !size->is_number_unsigned()) {
      return corrupt(absl::StrCat(where, " (", entry.path,
                                  "): \"size\" is not a non-negative integer"));
    }
    entry.size = size->get<uint64_t>();
    auto sha = e.find("sha256");
    if (sha == e.end() || !sha->is_string() ||
        sha->get_ref<const std::string&>().size() != 64 ||
        !IsLowerHex(sha->get_ref<const std::string&>())) {
      return corrupt(absl::StrCat(where, " (", entry.path,
                                  "): \"sha256\" is not 64 hex digits"));
    }
    entry.sha256 = sha->get<std::string>();
    auto mode = e.find("mode");
    if (mode != e.end() && !mode->is_string()) {
      return corrupt(
          absl::StrCat(where, " (", entry.path, "): \"mode\" is not a string"));
    }
    if (!listed.insert(entry.path).second) {
      return corrupt(absl::StrCat(entry.path, " is listed twice"));
    }
    out.entries.push_back(std::move(entry));
  }
  return out;
}

// Reads the tar stream into `staging`; returns the manifest's text and the
// size and checksum of every file extracted.
absl::Status ExtractEntries(const std::string& archive, ArchiveReader& r,
                            const Staging& staging,
                            std::map<std::string, Extracted>* files,
                            std::optional<std::string>* manifest_text) {
  std::vector<char> buf(1 << 20);
  while (true) {
    char h[kBlock];
    if (absl::Status s = r.ReadExactly(h, kBlock); !s.ok()) return s;
    if (std::all_of(h, h + kBlock, [](char c) { return c == 0; })) break;
    unsigned sum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    }
    auto want = ParseOctal(h + 148, 8);
    auto size = ParseOctal(h + 124, 12);
    auto mode = ParseOctal(h + 100, 8);
    if (!want.ok() || *want != sum || !size.ok() || !mode.ok() ||
        memcmp(h + 257, "ustar", 5) != 0) {
      return Malformed(
          absl::StrCat(archive, " is not a simprov backup (bad tar header)"));
    }
    const std::string name(h, strnlen(h, 100));
    const char type = h[156];
    // A ustar prefix (offset 345) would make the real name longer than the
    // one read here: simprov never writes one.
    if (!SafeRelativePath(name) || (type != '0' && type != '\0') ||
        h[345] != '\0') {
      return Malformed(absl::StrCat("the backup holds an unexpected entry: ",
                                    Printable(name)));
    }
    if (files->contains(name) ||
        (name == kBackupManifest && manifest_text->has_value())) {
      return Malformed(
          absl::StrCat("the backup holds ", Printable(name), " twice"));
    }
    if (name == kBackupLockName) {
      return Malformed(absl::StrCat("the backup holds an unexpected entry: ",
                                    kBackupLockName));
    }
    // Its data and padding must be in the file: refuse a size the archive
    // cannot hold before writing anything.
    const uint64_t padded = *size + (kBlock - *size % kBlock) % kBlock;
    if (*size > r.left() || padded > r.left()) {
      return Malformed("the backup is truncated");
    }
    if (name == kBackupManifest) {
      if (*size > kMaxManifestBytes) {
        return Malformed("the backup's manifest is too large");
      }
      std::string text(*size, '\0');
      if (absl::Status s = r.ReadExactly(text.data(), *size); !s.ok()) {
        return s;
      }
      *manifest_text = std::move(text);
    } else {
      const mode_t m = static_cast<mode_t>(*mode & 0755);
      const int out = CreateBelow(staging.fd, name, m);
      if (out < 0) {
        // A file where a directory is needed, or the reverse.
        return Malformed(absl::StrCat(
            "the backup holds an unexpected entry: ", Printable(name), " (",
            strerror(errno), ")"));
      }
      // The original mode (the umask narrowed it); never group/other write.
      fchmod(out, m);
      Sha256Hasher sha;
      absl::Status s;
      uint64_t left = *size;
      while (s.ok() && left > 0) {
        size_t n = std::min<uint64_t>(buf.size(), left);
        s = r.ReadExactly(buf.data(), n);
        if (!s.ok()) break;
        sha.Update(absl::string_view(buf.data(), n));
        s = WriteAll(out, buf.data(), n, staging.path + "/" + name);
        left -= n;
      }
      if (s.ok() && fsync(out) != 0) {
        s = Errno("cannot fsync", staging.path + "/" + name);
      }
      close(out);
      if (!s.ok()) return s;
      (*files)[name] = {*size, HexEncode(sha.Final())};
    }
    const size_t pad = static_cast<size_t>(padded - *size);
    if (pad > 0) {
      if (absl::Status s = r.ReadExactly(buf.data(), pad); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RestoreSummary> ExtractAndVerify(const std::string& archive,
                                                const Staging& staging,
                                                const std::string& kek_file,
                                                const StoreOpener& open_store) {
  int fd = open(archive.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", archive, ": ", strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(archive, " is not a regular file"));
  }
  ArchiveReader r(fd, static_cast<uint64_t>(st.st_size));
  std::map<std::string, Extracted> files;
  std::optional<std::string> manifest_text;
  absl::Status s = ExtractEntries(archive, r, staging, &files, &manifest_text);
  close(fd);
  if (!s.ok()) return s;
  if (!manifest_text) {
    return absl::InvalidArgumentError(
        absl::StrCat(archive, " has no manifest: not a simprov backup"));
  }
  auto m = ParseManifest(*manifest_text);
  if (!m.ok()) return m.status();
  RestoreSummary summary;
  summary.created_at = m->created_at;
  summary.kek_included = m->kek_included;
  for (const ManifestEntry& e : m->entries) {
    auto it = files.find(e.path);
    if (it == files.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the backup lacks ", Printable(e.path), " listed in its manifest"));
    }
    if (it->second.size != e.size || it->second.sha256 != e.sha256) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checksum mismatch for ", e.path, ": the backup is corrupt"));
    }
    summary.bytes += e.size;
  }
  if (m->entries.size() != files.size()) {
    return absl::InvalidArgumentError(
        "the backup holds files its manifest does not list");
  }
  summary.entries = files.size();
  if (!files.contains(kBackupStoreName)) {
    return absl::InvalidArgumentError("the backup holds no store");
  }
  if (absl::Status c = staging.CheckIntact(); !c.ok()) return c;
  // The KEK: from the archive, or the operator's --kek-file.
  std::vector<Bytes> keks;
  std::string source;
  const std::string kek_in_archive = staging.path + "/" + kBackupKekName;
  if (summary.kek_included) {
    if (!kek_file.empty()) {
      return absl::InvalidArgumentError(
          "this backup includes its KEK; drop --kek-file");
    }
    for (const std::string& p : {kek_in_archive, NextKekPath(kek_in_archive)}) {
      if (!PathExists(p)) continue;
      auto k = ReadKekFile(p);
      if (!k.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the backup's KEK is corrupt: ", k.status().message()));
      }
      keks.push_back(*k);
    }
    source = "the backup";
  } else {
    if (kek_file.empty()) {
      return absl::InvalidArgumentError(
          "this backup does not include the KEK (the broker ran with "
          "--kek-file); give it with --kek-file FILE");
    }
    auto k = ReadKekFile(kek_file);
    if (!k.ok()) return k.status();
    keks.push_back(*k);
    source = kek_file;
  }
  s = CheckKekOpens(staging.path + "/" + kBackupStoreName, open_store, keks,
                    source);
  for (Bytes& k : keks) SecureWipe(k);
  if (!s.ok()) return s;
  return summary;
}

// The target's state: absent, or a directory holding nothing but the lock
// file.
absl::StatusOr<bool> TargetExists(const std::string& target) {
  struct stat st;
  if (lstat(target.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return Errno("cannot stat", target);
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(target, " exists and is not a directory"));
  }
  DIR* d = opendir(target.c_str());
  if (d == nullptr) return Errno("cannot read directory", target);
  bool empty = true;
  while (struct dirent* ent = readdir(d)) {
    const std::string n = ent->d_name;
    if (n != "." && n != ".." && n != kBackupLockName) empty = false;
  }
  closedir(d);
  if (!empty) {
    return absl::FailedPreconditionError(absl::StrCat(
        target, " is not empty; restore needs a new or empty directory"));
  }
  return true;
}

}  // namespace

absl::StatusOr<RestoreSummary> RestoreBackup(const std::string& archive,
                                             const std::string& new_dir,
                                             const std::string& kek_file,
                                             const StoreOpener& open_store) {
  std::string target = new_dir;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  auto exists = TargetExists(target);
  if (!exists.ok()) return exists.status();
  if (absl::Status s = MakeDirectories(DirName(target), 0700); !s.ok()) {
    return s;
  }
  // Created here, never reused: mkdir fails on any existing path (a
  // leftover or a planted symlink), which is then left alone.
  Staging staging;
  staging.path = absl::StrCat(target, ".restore.tmp.", getpid());
  if (mkdir(staging.path.c_str(), 0700) != 0) {
    if (errno == EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat(staging.path,
                       " already exists (left by another restore?); remove it "
                       "and retry"));
    }
    return Errno("cannot create", staging.path);
  }
  staging.fd = open(staging.path.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (staging.fd < 0 || fstat(staging.fd, &st) != 0) {
    absl::Status s = Errno("cannot open", staging.path);
    if (staging.fd >= 0) close(staging.fd);
    return s;
  }
  staging.dev = st.st_dev;
  staging.ino = st.st_ino;
  // Removes what this restore created, and only that.
  auto discard = [&staging]() {
    if (staging.Intact()) (void)RemoveTree(staging.path);
    close(staging.fd);
  };
  auto r = ExtractAndVerify(archive, staging, kek_file, open_store);
  if (r.ok()) {
    if (absl::Status c = staging.CheckIntact(); !c.ok()) r = c;
  }
  if (!r.ok()) {
    discard();
    return r.status();
  }
  if (*exists) {
    // Swap the (empty, maybe locked) target with the staging directory in
    // one step, then remove the old target from the staging path.
    if (renameat2(AT_FDCWD, staging.path.c_str(), AT_FDCWD, target.c_str(),
                  RENAME_EXCHANGE) != 0) {
      absl::Status s = Errno("cannot replace", target);
      discard();
      return s;
    }
    (void)RemoveTree(staging.path);
    close(staging.fd);
  } else {
    // rename(2) refuses a non-empty directory created there meanwhile.
    if (rename(staging.path.c_str(), target.c_str()) != 0) {
      absl::Status s = Errno("cannot rename into", target);
      discard();
      return s;
    }
    close(staging.fd);
  }
  if (absl::Status s = FsyncDirectory(DirName(target)); !s.ok()) return s;
  return r;
}

}  // namespace simprov
