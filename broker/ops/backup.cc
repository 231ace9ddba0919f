#include "broker/ops/backup.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "broker/keys/kek_rotation.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/digest.h"
#include "common/openssl_ptr.h"
#include "common/sealed_box.h"

namespace simprov {
namespace {

constexpr size_t kBlock = 512;
constexpr const char* kStoreName = kBackupStoreName;
constexpr const char* kKekName = kBackupKekName;

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

// Files of a data dir that a backup leaves out: the live store (copied
// through Store::Snapshot instead), its side files, runtime files.
bool Skipped(const std::string& rel) {
  static const char* const kRuntime[] = {
      "simprov.db",         "simprov.db-wal", "simprov.db-shm",
      "simprov.db-journal", "admin.sock",     "listen-address",
      "http-address",       "admin-address",  kBackupLockName,
  };
  for (const char* r : kRuntime) {
    if (rel == r) return true;
  }
  return absl::StrContains(rel, ".tmp.");
}

// ---- ustar.

void Octal(char* field, size_t width, uint64_t v) {
  // width-1 digits and a NUL.
  std::string s(width - 1, '0');
  for (size_t i = width - 1; i-- > 0;) {
    s[i] = static_cast<char>('0' + (v & 7));
    v >>= 3;
  }
  memcpy(field, s.data(), width - 1);
  field[width - 1] = '\0';
}

std::string TarHeader(const std::string& name, uint64_t size, mode_t mode,
                      int64_t mtime, char type) {
  std::string h(kBlock, '\0');
  memcpy(&h[0], name.data(), name.size());
  Octal(&h[100], 8, mode & 07777);
  Octal(&h[108], 8, 0);
  Octal(&h[116], 8, 0);
  Octal(&h[124], 12, size);
  Octal(&h[136], 12, static_cast<uint64_t>(std::max<int64_t>(mtime, 0)));
  memset(&h[148], ' ', 8);
  h[156] = type;
  memcpy(&h[257], "ustar", 6);
  memcpy(&h[263], "00", 2);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  Octal(&h[148], 7, sum);
  h[155] = ' ';
  return h;
}

class ArchiveWriter {
 public:
  explicit ArchiveWriter(int fd) : fd_(fd) {}
  absl::Status Write(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = write(fd_, c, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return absl::InternalError(
            absl::StrCat("cannot write the backup: ", strerror(errno)));
      }
      c += w;
      n -= static_cast<size_t>(w);
    }
    return absl::OkStatus();
  }
  absl::Status Pad(uint64_t size) {
    static const char zeros[kBlock] = {};
    size_t rem = size % kBlock;
    return rem == 0 ? absl::OkStatus() : Write(zeros, kBlock - rem);
  }

 private:
  int fd_;
};

struct EntryInfo {
  std::string path;
  uint64_t size = 0;
  mode_t mode = 0600;
  std::string sha256;
};

// Streams the file at `src` as entry `rel`.
absl::StatusOr<EntryInfo> AddFile(ArchiveWriter& w, const std::string& src,
                                  const std::string& rel, int64_t mtime) {
  if (rel.size() >= 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("path too long for the backup: ", rel));
  }
  int fd = open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Errno("cannot open", src);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return Errno("cannot stat", src);
  }
  EntryInfo e;
  e.path = rel;
  e.size = static_cast<uint64_t>(st.st_size);
  e.mode = st.st_mode & 0777;
  absl::Status s =
      w.Write(TarHeader(rel, e.size, e.mode, mtime, '0').data(), kBlock);
  Sha256Hasher sha;
  std::vector<char> buf(1 << 20);
  uint64_t left = e.size;
  while (s.ok() && left > 0) {
    ssize_t n = read(fd, buf.data(), std::min<uint64_t>(buf.size(), left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // The file shrank under us: the archive would be inconsistent.
      s = absl::UnavailableError(
          absl::StrCat(src, " changed during the backup; retry"));
      break;
    }
    sha.Update(absl::string_view(buf.data(), static_cast<size_t>(n)));
    s = w.Write(buf.data(), static_cast<size_t>(n));
    left -= static_cast<uint64_t>(n);
  }
  close(fd);
  if (!s.ok()) return s;
  if (absl::Status p = w.Pad(e.size); !p.ok()) return p;
  e.sha256 = HexEncode(sha.Final());
  return e;
}

// Regular files under `root` (relative paths, sorted), skipping Skipped().
absl::Status Walk(const std::string& root, const std::string& rel,
                  std::vector<std::string>* files) {
  const std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = opendir(dir.c_str());
  if (!d) return Errno("cannot read directory", dir);
  std::vector<std::string> names;
  while (struct dirent* ent = readdir(d)) {
    std::string n = ent->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    const std::string r = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (lstat((root + "/" + r).c_str(), &st) != 0) continue;  // vanished
    if (S_ISDIR(st.st_mode)) {
      if (absl::Status s = Walk(root, r, files); !s.ok()) return s;
    } else if (S_ISREG(st.st_mode) && !Skipped(r)) {
      files->push_back(r);
    }
  }
  return absl::OkStatus();
}

// The KEK files of a data dir as they are now ("" when absent).
std::string KekState(const std::string& data_dir) {
  std::string out;
  for (const std::string& p :
       {data_dir + "/" + kKekName, NextKekPath(data_dir + "/" + kKekName)}) {
    auto t = ReadFileToString(p, 1024);
    out += t.ok() ? *t : std::string();
    out += '\n';
  }
  return out;
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<BackupSummary> WriteArchive(Store& store,
                                           const std::string& data_dir,
                                           const std::string& tmp,
                                           const std::string& db_copy,
                                           Clock& clock) {
  const absl::Time now = clock.Now();
  const int64_t mtime = absl::ToUnixSeconds(now);
  // The KEK files before and after the snapshot: a rotation that moved in
  // between would make the pair inconsistent, so the caller retries.
  const std::string kek_before = KekState(data_dir);
  if (absl::Status s = store.Snapshot(db_copy); !s.ok()) return s;
  std::vector<std::string> files;
  if (absl::Status s = Walk(data_dir, "", &files); !s.ok()) return s;
  int fd = open(tmp.c_str(),
                O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("cannot create", tmp);
  fchmod(fd, 0600);
  ArchiveWriter w(fd);
  std::vector<EntryInfo> entries;
  absl::Status s;
  auto add = [&](const std::string& src, const std::string& rel) {
    if (!s.ok()) return;
    auto e = AddFile(w, src, rel, mtime);
    if (!e.ok()) {
      s = e.status();
      return;
    }
    entries.push_back(*e);
  };
  add(db_copy, kStoreName);
  for (const std::string& f : files) {
    add(data_dir + "/" + f, f);
  }
  if (s.ok() && KekState(data_dir) != kek_before) {
    s = absl::AbortedError("the KEK changed during the backup");
  }
  BackupSummary summary;
  for (const EntryInfo& e : entries) {
    if (e.path == kKekName) summary.kek_included = true;
  }
  if (s.ok()) {
    nlohmann::json m;
    m["format"] = "simprov-backup";
    m["version"] = kBackupFormatVersion;
    m["created_at"] = Rfc3339(now);
    m["kek"] = summary.kek_included ? "included" : "external";
    nlohmann::json list = nlohmann::json::array();
    for (const EntryInfo& e : entries) {
      char mode[8];
      snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(e.mode));
      list.push_back({{"path", e.path},
                      {"size", e.size},
                      {"mode", mode},
                      {"sha256", e.sha256}});
      summary.bytes += e.size;
    }
    m["entries"] = list;
    summary.entries = entries.size();
    const std::string text = m.dump(2) + "\n";
    s = w.Write(
        TarHeader(kBackupManifest, text.size(), 0600, mtime, '0').data(),
        kBlock);
    if (s.ok()) s = w.Write(text.data(), text.size());
    if (s.ok()) s = w.Pad(text.size());
    static const char zeros[2 * kBlock] = {};
    if (s.ok()) s = w.Write(zeros, sizeof(zeros));
  }
  if (s.ok() && fsync(fd) != 0) s = Errno("cannot fsync", tmp);
  if (close(fd) != 0 && s.ok()) s = Errno("cannot close", tmp);
  if (!s.ok()) return s;
  return summary;
}

}  // namespace

absl::StatusOr<BackupSummary> CreateBackup(Store& store,
                                           const std::string& data_dir,
                                           const std::string& out,
                                           Clock& clock) {
  const std::string tmp = absl::StrCat(out, ".tmp.", getpid());
  const std::string db_copy = absl::StrCat(out, ".db.tmp.", getpid());
  absl::StatusOr<BackupSummary> r;
  for (int attempt = 0; attempt < 3; ++attempt) {
    unlink(tmp.c_str());
    unlink(db_copy.c_str());
    r = WriteArchive(store, data_dir, tmp, db_copy, clock);
    if (r.ok() || r.status().code() != absl::StatusCode::kAborted) break;
  }
  unlink(db_copy.c_str());
  unlink((db_copy + "-journal").c_str());
  if (!r.ok()) {
    unlink(tmp.c_str());
    return r.status();
  }
  if (rename(tmp.c_str(), out.c_str()) != 0) {
    absl::Status s = Errno("cannot rename to", out);
    unlink(tmp.c_str());
    return s;
  }
  if (absl::Status s = FsyncDirectory(DirName(out)); !s.ok()) return s;
  return r;
}

absl::StatusOr<StreamedBackup> StreamBackup(
    Store& store, const std::string& data_dir, Clock& clock, size_t chunk_size,
    const std::function<bool(absl::string_view)>& sink) {
  if (chunk_size == 0) chunk_size = 1;
  const char* env = getenv("TMPDIR");
  std::string scratch =
      absl::StrCat(env != nullptr && env[0] != '\0' ? env : "/tmp",
                   "/simprov-backup.XXXXXX");
  // mkdtemp: a new directory only we can enter (0700).
  if (mkdtemp(scratch.data()) == nullptr) {
    return Errno("cannot create a temporary directory like", scratch);
  }
  const std::string archive = scratch + "/backup.tar";
  absl::StatusOr<StreamedBackup> result;
  auto built = CreateBackup(store, data_dir, archive, clock);
  int fd = -1;
  if (!built.ok()) {
    result = built.status();
  } else if ((fd = open(archive.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) <
             0) {
    result = Errno("cannot open", archive);
  } else {
    StreamedBackup out;
    out.summary = *built;
    Sha256Hasher sha;
    std::string buf(chunk_size, '\0');
    absl::Status s;
    while (s.ok()) {
      ssize_t n = read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        s = Errno("cannot read", archive);
        break;
      }
      if (n == 0) break;
      const absl::string_view piece(buf.data(), static_cast<size_t>(n));
      sha.Update(piece);
      out.archive_size += piece.size();
      if (!sink(piece)) {
        s = absl::CancelledError("the receiver of the backup went away");
      }
    }
    close(fd);
    out.sha256 = HexEncode(sha.Final());
    if (s.ok()) {
      result = std::move(out);
    } else {
      result = s;
    }
  }
  if (absl::Status s = RemoveTree(scratch); !s.ok() && result.ok()) {
    result = s;
  }
  return result;
}

}  // namespace simprov
