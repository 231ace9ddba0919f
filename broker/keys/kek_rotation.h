// The key-encryption key (KEK) in memory, and its rotation.
//
// KekRing holds the KEK that seals new boxes and, while a rotation runs,
// the previous KEK: Open tries the sealing KEK first, then the previous
// one (AES-GCM tells them apart with certainty). Switching is done under
// a lock; callers never see a torn state.
//
// KekRotator re-wraps every sealed K/OPc under a new random KEK while the
// broker serves. Crash safety (docs/operations.md):
//   1. the new KEK is written durably to KEKFILE.next (0600, fsync);
//   2. only then does the ring seal new boxes under it;
//   3. rows are re-wrapped in batches, each batch one store transaction
//      (a row that already opens under the new KEK is skipped), and the
//      store scrubs the replaced boxes from its files (Store::
//      RewrapSealedKeys: for SQLite secure_delete, VACUUM and a truncating
//      checkpoint), so no old ciphertext is left on disk when it returns;
//   4. KEKFILE.next is renamed over KEKFILE (atomic, directory fsync) and
//      the previous KEK is dropped.
// A crash at any point leaves every row sealed under KEKFILE or
// KEKFILE.next; at the next start the broker loads both and finishes the
// rotation before it serves (ResumePending).
#ifndef SIMPROV_BROKER_KEYS_KEK_ROTATION_H_
#define SIMPROV_BROKER_KEYS_KEK_ROTATION_H_

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "broker/store/store.h"
#include "common/bytes.h"
#include "common/clock.h"

namespace simprov {

class KekRing {
 public:
  explicit KekRing(Bytes kek);
  // The KEK that seals new boxes.
  std::shared_ptr<const Bytes> SealingKey() const;
  // Opens a box sealed under the sealing KEK or, during a rotation, the
  // previous one. Fails without detail.
  absl::StatusOr<Bytes> Open(const Bytes& box, const Bytes& aad) const;
  // Seals under `next` from now on; keeps the current KEK for opening.
  void Switch(Bytes next);
  void DropPrevious();
  bool rotating() const;
  // The previous KEK while rotating, else null.
  std::shared_ptr<const Bytes> PreviousKey() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Bytes> sealing_;   // guarded by mu_
  std::shared_ptr<const Bytes> previous_;  // guarded by mu_; may be null
};

// KEKFILE.next: the KEK a rotation in progress moves to.
std::string NextKekPath(const std::string& kek_path);

// Loads KEKFILE (creating it when absent and `create`) and, when present,
// KEKFILE.next (then the ring is rotating: seals under next).
absl::StatusOr<std::unique_ptr<KekRing>> LoadKekRing(
    const std::string& kek_path, Random& random, bool create = true);

// Reads a KEK file: 64 hex digits (whitespace around is ignored).
absl::StatusOr<Bytes> ReadKekFile(const std::string& path);

struct KekRotationResult {
  uint64_t rows = 0;       // sealed rows visited
  uint64_t rewrapped = 0;  // rows re-wrapped by this call
  bool resumed = false;    // finished a rotation that was in progress
};

class KekRotator {
 public:
  KekRotator(Store& store, KekRing& ring, std::string kek_path, Clock& clock,
             Random& random, size_t batch_size = 1000);

  // Rotates to a new random KEK (or finishes the one in progress).
  // One rotation at a time; a second caller waits. `actor` names the admin
  // in the audit trail.
  absl::StatusOr<KekRotationResult> Rotate(const std::string& actor);
  // Finishes a rotation left in progress by a crash; no-op otherwise.
  absl::StatusOr<KekRotationResult> ResumePending();

 private:
  absl::StatusOr<KekRotationResult> RewrapAndCommit();

  Store& store_;
  KekRing& ring_;
  const std::string kek_path_;
  Clock& clock_;
  Random& random_;
  const size_t batch_size_;
  std::mutex rotate_mu_;  // one rotation at a time
};

}  // namespace simprov

#endif  // SIMPROV_BROKER_KEYS_KEK_ROTATION_H_
