#include "broker/cli/import_progress.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace simprov {

ImportProgress::ImportProgress(std::istream& in, const std::string& path)
    : in_(in), start_(std::chrono::steady_clock::now()) {
  struct stat st;
  enabled_ = isatty(STDERR_FILENO) == 1;
  if (enabled_ && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    total_bytes_ = static_cast<uint64_t>(st.st_size);
  }
  last_draw_ = start_;
}

void ImportProgress::Draw(bool final) {
  const auto now = std::chrono::steady_clock::now();
  if (!final && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double s = std::chrono::duration<double>(now - start_).count();
  const double rate = s > 0 ? static_cast<double>(rows_) / s : 0;
  int percent = 0;
  if (total_bytes_ > 0) {
    std::streampos pos = in_.tellg();
    if (pos >= 0) {
      percent = static_cast<int>(100.0 * static_cast<double>(pos) /
                                 static_cast<double>(total_bytes_));
    }
  }
  if (final) percent = 100;
  constexpr int kWidth = 30;
  std::string bar(kWidth, ' ');
  for (int i = 0; i < kWidth * percent / 100; ++i) bar[i] = '#';
  std::fprintf(stderr, "\r[%s] %3d%% %llu rows %.0f rows/s %.1f s ",
               bar.c_str(), percent, static_cast<unsigned long long>(rows_),
               rate, s);
  std::fflush(stderr);
}

void ImportProgress::Committing() {
  if (!enabled_) return;
  Draw(true);
  std::fprintf(stderr, "committing...");
  std::fflush(stderr);
}

void ImportProgress::Done(uint64_t imported) {
  if (!enabled_) return;
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count();
  std::fprintf(stderr, "\r\033[K%llu rows in %.1f s (%.0f rows/s)\n",
               static_cast<unsigned long long>(imported), s,
               s > 0 ? static_cast<double>(imported) / s : 0);
}

}  // namespace simprov
