// Internal to simprov_pkcs11: a Token's state, the sessions lent from its
// pool, and the helpers token.cc and key.cc share.
#ifndef SIMPROV_COMMON_PKCS11_SESSION_H_
#define SIMPROV_COMMON_PKCS11_SESSION_H_

#include <p11-kit/pkcs11.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/pkcs11/module.h"
#include "common/pkcs11/token.h"

namespace simprov::pkcs11 {

// The pool, the login and the connection's generation.
struct TokenState {
  std::shared_ptr<Module> module;
  Uri uri;  // the token's attributes (no object, no PIN)
  std::string name;
  std::string pin;  // wiped in ~Token
  TokenOptions limits;

  std::mutex mu;
  std::condition_variable cv;
  CK_SLOT_ID slot = 0;                  // guarded by mu
  std::vector<CK_SESSION_HANDLE> idle;  // guarded by mu
  size_t open = 0;                      // sessions of `epoch`, idle or lent
  uint64_t epoch = 1;                   // bumped when the pool is dropped
  uint64_t module_generation = 0;       // the module's when connected
  bool connected = false;               // guarded by mu
  // A key found before is gone: the next connect re-initializes the module.
  bool reinitialize = false;  // guarded by mu
  std::chrono::steady_clock::time_point retry_at{};
};

absl::Status Fail(const TokenState& s, absl::string_view what, CK_RV rv);
absl::StatusOr<CK_SESSION_HANDLE> OpenSession(TokenState& s, CK_SLOT_ID slot,
                                              bool login, CK_RV* rv_out);
absl::Status ConnectLocked(TokenState& s, bool* reinitialize);
void DropLocked(TokenState& s, uint64_t epoch);

// A session lent from the pool, with the module's reader lock; returned
// (or, after a lost connection, closed) when it goes. Lock order: the
// module's reader lock, then s.mu.
class Session {
 public:
  static absl::StatusOr<Session> Acquire(TokenState& s) {
    const auto deadline = std::chrono::steady_clock::now() +
                          absl::ToChronoMilliseconds(s.limits.acquire_timeout);
    for (int round = 0;; ++round) {
      uint64_t generation = 0;
      {
        s.module->calls().ReaderLock();
        auto lent = AcquireLocked(s, deadline, round > 0, &generation);
        if (lent.ok() || generation == 0) {
          if (!lent.ok()) s.module->calls().ReaderUnlock();
          return lent;
        }
        s.module->calls().ReaderUnlock();
      }
      // The module needs C_Initialize again: no lock held here.
      if (round > 0) {
        return absl::UnavailableError(
            absl::StrCat("PKCS#11 ", s.name, " is not available"));
      }
      (void)s.module->Reinitialize(generation - 1, s.limits.retry_after);
    }
  }

  Session(Session&& o) noexcept
      : s_(o.s_), h_(o.h_), epoch_(o.epoch_), generation_(o.generation_) {
    o.s_ = nullptr;
  }
  Session& operator=(Session&&) = delete;
  ~Session() {
    if (s_ == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(s_->mu);
      if (epoch_ == s_->epoch) {
        s_->idle.push_back(h_);
        s_->cv.notify_one();
      } else if (s_->module->generation() == generation_) {
        s_->module->f()->C_CloseSession(h_);  // its pool was dropped
      }
    }
    s_->module->calls().ReaderUnlock();
  }

  CK_SESSION_HANDLE handle() const { return h_; }
  uint64_t epoch() const { return epoch_; }
  CK_FUNCTION_LIST* f() const { return s_->module->f(); }
  // After `rv`: drops the whole pool if the connection is gone.
  void Failed(CK_RV rv) {
    if (!ConnectionLost(rv)) return;
    std::lock_guard<std::mutex> lock(s_->mu);
    DropLocked(*s_, epoch_);
  }
  // A key found before is not in the token any more: the token may have
  // gone and come back, which some modules see only after C_Initialize.
  void KeyVanished() {
    std::lock_guard<std::mutex> lock(s_->mu);
    DropLocked(*s_, epoch_);
    s_->reinitialize = true;
  }

 private:
  Session(TokenState* s, CK_SESSION_HANDLE h, uint64_t epoch)
      : s_(s), h_(h), epoch_(epoch), generation_(s->module_generation) {}

  // With the reader lock held. On a failure that C_Initialize may cure,
  // sets *reinit_generation to the module's generation + 1 (never 0).
  static absl::StatusOr<Session> AcquireLocked(
      TokenState& s, std::chrono::steady_clock::time_point deadline,
      bool after_reinit, uint64_t* reinit_generation) {
    std::unique_lock<std::mutex> lock(s.mu);
    for (;;) {
      if (s.connected && s.module->generation() != s.module_generation) {
        DropLocked(s, s.epoch);  // another Token re-initialized the module
      }
      if (!s.connected) {
        const auto now = std::chrono::steady_clock::now();
        if (now < s.retry_at && !after_reinit) {
          return absl::UnavailableError(
              absl::StrCat("PKCS#11 ", s.name, " is not available"));
        }
        if (s.reinitialize && !after_reinit) {
          s.reinitialize = false;
          *reinit_generation = s.module->generation() + 1;
          return absl::UnavailableError("re-initializing");
        }
        bool reinit = false;
        if (absl::Status c = ConnectLocked(s, &reinit); !c.ok()) {
          s.retry_at = now + absl::ToChronoMilliseconds(s.limits.retry_after);
          if (reinit && !after_reinit) {
            *reinit_generation = s.module->generation() + 1;
          }
          return absl::UnavailableError(c.message());
        }
      }
      if (!s.idle.empty()) {
        CK_SESSION_HANDLE h = s.idle.back();
        s.idle.pop_back();
        return Session(&s, h, s.epoch);
      }
      if (s.open < s.limits.max_sessions) {
        ++s.open;
        const uint64_t epoch = s.epoch;
        const CK_SLOT_ID slot = s.slot;
        lock.unlock();
        CK_RV rv = CKR_OK;
        auto h = OpenSession(s, slot, false, &rv);
        lock.lock();
        if (h.ok()) return Session(&s, *h, epoch);
        if (epoch == s.epoch) --s.open;
        if (ConnectionLost(rv)) DropLocked(s, epoch);
        return absl::UnavailableError(h.status().message());
      }
      if (s.cv.wait_until(lock, deadline) == std::cv_status::timeout) {
        return absl::UnavailableError(
            absl::StrCat("PKCS#11 ", s.name, ": all ", s.limits.max_sessions,
                         " sessions busy for ",
                         absl::FormatDuration(s.limits.acquire_timeout)));
      }
    }
  }

  TokenState* s_;
  CK_SESSION_HANDLE h_;
  uint64_t epoch_;
  uint64_t generation_;  // the module's when the session was opened
};

// Every object of `cls` with the label and/or id (either may be absent).
absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjects(
    Session& session, CK_OBJECT_CLASS cls, const std::string* label,
    const std::string* id);
absl::StatusOr<std::string> Attribute(Session& session, CK_OBJECT_HANDLE obj,
                                      CK_ATTRIBUTE_TYPE type);

struct Key::Cache {
  std::mutex mu;
  uint64_t epoch = 0;  // the connection `handle` belongs to
  CK_OBJECT_HANDLE handle = 0;
};

}  // namespace simprov::pkcs11

#endif  // SIMPROV_COMMON_PKCS11_SESSION_H_
