// The backup reader (broker/ops/backup RestoreBackup): the ustar walk,
// entry names, the manifest and its checksums, the KEK files. The archive
// is written to a private directory (under /dev/shm when it exists: restore
// fsyncs every file) and restored next to it; the store opener refuses, so
// a run that gets that far stops at the KEK check. The directory is
// emptied after every run.
//
// Input: one mode byte, then (bit 0 clear) the archive, or (set) the text of
// MANIFEST.json, which the harness puts into a well-formed archive after a
// store file and a KEK file, so that mutations of the manifest are not lost
// to tar checksums and sizes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "broker/ops/backup.h"

namespace {

std::string dir;

// A ustar header for a regular file, as the broker writes it.
std::string TarHeader(const std::string& name, size_t size) {
  std::string h(512, '\0');
  name.copy(&h[0], 99);
  std::snprintf(&h[100], 8, "%07o", 0600u);
  std::snprintf(&h[108], 8, "%07o", 0u);
  std::snprintf(&h[116], 8, "%07o", 0u);
  std::snprintf(&h[124], 12, "%011zo", size);
  std::snprintf(&h[136], 12, "%011o", 0u);
  std::memset(&h[148], ' ', 8);
  h[156] = '0';
  std::memcpy(&h[257],
              "ustar\0"
              "00",
              8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(&h[148], 8, "%06o", sum);
  return h;
}

void AddFile(std::string& tar, const std::string& name,
             const std::string& data) {
  tar += TarHeader(name, data.size());
  tar += data;
  tar.append((512 - data.size() % 512) % 512, '\0');
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* base =
      std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  dir = std::string(base) + "/simprov-backup-fuzz." + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string tar(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    std::string manifest = std::move(tar);
    tar.clear();
    AddFile(tar, "simprov.db", "SQLite format 3");
    AddFile(tar, "kek", std::string(64, '1') + "\n");
    AddFile(tar, "MANIFEST.json", manifest);
    tar.append(1024, '\0');
  }
  const std::string archive = dir + "/archive.tar";
  {
    std::ofstream out(archive, std::ios::binary | std::ios::trunc);
    out.write(tar.data(), static_cast<std::streamsize>(tar.size()));
  }
  auto refuse = [](const std::string&)
      -> absl::StatusOr<std::unique_ptr<simprov::Store>> {
    return absl::UnavailableError("no store in the fuzzer");
  };
  (void)simprov::RestoreBackup(archive, dir + "/restored", "", refuse);
  (void)simprov::RestoreBackup(archive, dir + "/restored2", dir + "/kek",
                               refuse);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::filesystem::remove_all(e.path(), ec);
  }
  return 0;
}
