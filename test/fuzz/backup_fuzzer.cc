// The backup reader (broker/ops/backup RestoreBackup): the ustar walk,
// entry names, the manifest and its checksums, the KEK files. The archive
// is written to a private directory (under /dev/shm when it exists: restore
// fsyncs every file) and restored next to it; the store opener refuses, so
// a run that gets that far stops at the KEK check. The directory is
// emptied after every run.
//
// Input: the archive.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "broker/ops/backup.h"

namespace {

std::string dir;

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
  const std::string archive = dir + "/archive.tar";
  {
    std::ofstream out(archive, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data),
              static_cast<std::streamsize>(size));
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
