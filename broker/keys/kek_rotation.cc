#include "broker/keys/kek_rotation.h"

#include <stdio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/log.h"
#include "common/sealed_box.h"

namespace simprov {

KekRing::KekRing(Bytes kek)
    : sealing_(std::make_shared<const Bytes>(std::move(kek))) {}

std::shared_ptr<const Bytes> KekRing::SealingKey() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sealing_;
}

std::shared_ptr<const Bytes> KekRing::PreviousKey() const {
  std::lock_guard<std::mutex> lock(mu_);
  return previous_;
}

bool KekRing::rotating() const {
  std::lock_guard<std::mutex> lock(mu_);
  return previous_ != nullptr;
}

absl::StatusOr<Bytes> KekRing::Open(const Bytes& box, const Bytes& aad) const {
  std::shared_ptr<const Bytes> sealing, previous;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sealing = sealing_;
    previous = previous_;
  }
  auto opened = OpenBox(*sealing, box, aad);
  if (opened.ok() || !previous) return opened;
  return OpenBox(*previous, box, aad);
}

void KekRing::Switch(Bytes next) {
  auto n = std::make_shared<const Bytes>(std::move(next));
  std::lock_guard<std::mutex> lock(mu_);
  previous_ = sealing_;
  sealing_ = std::move(n);
}

void KekRing::DropPrevious() {
  std::lock_guard<std::mutex> lock(mu_);
  previous_.reset();
}

std::string NextKekPath(const std::string& kek_path) {
  return kek_path + ".next";
}

absl::StatusOr<Bytes> ReadKekFile(const std::string& path) {
  auto text = ReadFileToString(path, 1024);
  if (!text.ok()) return text.status();
  auto kek = HexDecode(std::string(absl::StripAsciiWhitespace(*text)));
  if (!kek.ok() || kek->size() != kKekSize) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " does not hold a key-encryption key (64 hex digits)"));
  }
  return *kek;
}

absl::StatusOr<std::unique_ptr<KekRing>> LoadKekRing(
    const std::string& kek_path, Random& random, bool create) {
  if (!PathExists(kek_path)) {
    if (!create) {
      return absl::NotFoundError(absl::StrCat("no KEK file ", kek_path));
    }
    Bytes kek = random.Generate(kKekSize);
    std::string hex = HexEncode(kek) + "\n";
    SecureWipe(kek);
    if (absl::Status s = WriteFileAtomic(kek_path, hex, 0600); !s.ok()) {
      return s;
    }
    LogInfo("created key-encryption key %s", kek_path);
  }
  auto kek = ReadKekFile(kek_path);
  if (!kek.ok()) return kek.status();
  auto ring = std::make_unique<KekRing>(std::move(*kek));
  const std::string next = NextKekPath(kek_path);
  if (PathExists(next)) {
    auto n = ReadKekFile(next);
    if (!n.ok()) return n.status();
    ring->Switch(std::move(*n));
  }
  return ring;
}

KekRotator::KekRotator(Store& store, KekRing& ring, std::string kek_path,
                       Clock& clock, Random& random, size_t batch_size)
    : store_(store),
      ring_(ring),
      kek_path_(std::move(kek_path)),
      clock_(clock),
      random_(random),
      batch_size_(batch_size) {}

absl::StatusOr<KekRotationResult> KekRotator::Rotate(const std::string& actor) {
  std::lock_guard<std::mutex> lock(rotate_mu_);
  const bool resumed = ring_.rotating();
  if (!resumed) {
    Bytes next = random_.Generate(kKekSize);
    std::string hex = HexEncode(next) + "\n";
    // Durable before anything is sealed under it.
    absl::Status s = WriteFileAtomic(NextKekPath(kek_path_), hex, 0600);
    std::fill(hex.begin(), hex.end(), '\0');
    if (!s.ok()) {
      SecureWipe(next);
      return s;
    }
    ring_.Switch(std::move(next));
  }
  auto r = RewrapAndCommit();
  if (!r.ok()) {
    (void)store_.AppendAudit({clock_.Now(), actor, "rotate-kek", "kek",
                              "failed", std::string(r.status().message())});
    return r.status();
  }
  r->resumed = resumed;
  (void)store_.AppendAudit(
      {clock_.Now(), actor, "rotate-kek", "kek", "ok",
       absl::StrCat(r->rewrapped, " of ", r->rows, " sealed rows re-wrapped",
                    resumed ? " (resumed)" : "")});
  LogInfo("rotate-kek: %d of %d sealed rows re-wrapped; %s replaced",
          static_cast<int64_t>(r->rewrapped), static_cast<int64_t>(r->rows),
          kek_path_);
  return r;
}

absl::StatusOr<KekRotationResult> KekRotator::ResumePending() {
  if (!ring_.rotating()) return KekRotationResult{};
  LogInfo("rotate-kek: finishing the rotation in progress (%s exists)",
          NextKekPath(kek_path_));
  return Rotate("broker");
}

absl::StatusOr<KekRotationResult> KekRotator::RewrapAndCommit() {
  const std::shared_ptr<const Bytes> next = ring_.SealingKey();
  const std::shared_ptr<const Bytes> previous = ring_.PreviousKey();
  if (!previous) return absl::InternalError("no rotation in progress");
  std::string bad_imsi;
  auto fn = [&](const std::string& imsi,
                const Bytes& sealed) -> absl::StatusOr<std::optional<Bytes>> {
    const Bytes aad = ToBytes(imsi);
    if (OpenBox(*next, sealed, aad).ok()) return std::optional<Bytes>();
    auto plain = OpenBox(*previous, sealed, aad);
    if (!plain.ok()) {
      return absl::DataLossError(absl::StrCat(
          "sealed keys of IMSI ", imsi,
          " open under neither the old nor the new KEK; rotation stopped"));
    }
    Bytes box = SealBox(*next, *plain, aad, random_);
    SecureWipe(*plain);
    return std::optional<Bytes>(std::move(box));
  };
  auto counts = store_.RewrapSealedKeys(fn, batch_size_);
  if (!counts.ok()) return counts.status();
  // Every row is sealed under the new KEK: make it the KEK.
  if (rename(NextKekPath(kek_path_).c_str(), kek_path_.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ",
                                            NextKekPath(kek_path_), " to ",
                                            kek_path_, ": ", strerror(errno)));
  }
  if (absl::Status s = FsyncDirectory(DirName(kek_path_)); !s.ok()) return s;
  ring_.DropPrevious();
  KekRotationResult r;
  r.rows = counts->rows;
  r.rewrapped = counts->rewrapped;
  return r;
}

}  // namespace simprov
