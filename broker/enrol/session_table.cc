#include "broker/enrol/session_table.h"

#include <algorithm>

#include "common/digest.h"
#include "common/sealed_box.h"

namespace simprov {

namespace {
std::string Key(const Bytes& id) { return std::string(id.begin(), id.end()); }

void Wipe(Session& s) {
  SecureWipe(s.xres);
  SecureWipe(s.ck);
  SecureWipe(s.ik);
}
}  // namespace

Bytes XresHash(const Bytes& id, const Bytes& xres) {
  Bytes data = id;
  data.insert(data.end(), xres.begin(), xres.end());
  Bytes h = Sha256(data);
  SecureWipe(data);
  return h;
}

bool ResMatches(const Session& s, const Bytes& res) {
  if (s.xres_hash.empty()) return ConstantTimeEqual(res, s.xres);
  return ConstantTimeEqual(XresHash(s.id, res), s.xres_hash);
}

void InMemorySessionTable::EraseLocked(const std::string& key) {
  auto it = by_id_.find(key);
  if (it == by_id_.end()) return;
  Session s = RemoveLocked(it);
  Wipe(s);
}

absl::Status InMemorySessionTable::Insert(Session s) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string key = Key(s.id);
  // Replace the oldest open sessions of this IMSI beyond the cap. Every id
  // in by_imsi_ is live (RemoveLocked keeps the two maps in step), so each
  // EraseLocked shrinks the list and the loop ends.
  for (auto list = by_imsi_.find(s.imsi);
       list != by_imsi_.end() && list->second.size() >= max_per_imsi_;
       list = by_imsi_.find(s.imsi)) {
    EraseLocked(std::string(list->second.front()));
  }
  // Global cap: drop the oldest sessions of anybody.
  while (by_id_.size() >= max_total_ && !order_.empty()) {
    std::string oldest = order_.front();
    order_.pop_front();
    EraseLocked(oldest);
  }
  by_imsi_[s.imsi].push_back(key);
  order_.push_back(key);
  by_id_.emplace(std::move(key), std::move(s));
  return absl::OkStatus();
}

Session InMemorySessionTable::RemoveLocked(
    std::unordered_map<std::string, Session>::iterator it) {
  Session s = std::move(it->second);
  auto list = by_imsi_.find(s.imsi);
  if (list != by_imsi_.end()) {
    auto& q = list->second;
    q.erase(std::remove(q.begin(), q.end(), it->first), q.end());
    if (q.empty()) by_imsi_.erase(list);
  }
  by_id_.erase(it);
  return s;
}

absl::StatusOr<std::optional<Session>> InMemorySessionTable::Take(
    const Bytes& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(Key(id));
  if (it == by_id_.end()) return std::optional<Session>();
  return std::optional<Session>(RemoveLocked(it));
}

absl::StatusOr<std::optional<Session>> InMemorySessionTable::TakeByRand(
    const std::string& imsi, const Bytes& rand) {
  std::lock_guard<std::mutex> lock(mu_);
  auto list = by_imsi_.find(imsi);
  if (list == by_imsi_.end()) return std::optional<Session>();
  for (const std::string& key : list->second) {
    auto it = by_id_.find(key);
    if (it != by_id_.end() && ConstantTimeEqual(it->second.rand, rand)) {
      // Invalidates `list`; we return at once.
      return std::optional<Session>(RemoveLocked(it));
    }
  }
  return std::optional<Session>();
}

absl::Status InMemorySessionTable::ExpireBefore(absl::Time cutoff) {
  std::lock_guard<std::mutex> lock(mu_);
  while (!order_.empty()) {
    auto it = by_id_.find(order_.front());
    if (it != by_id_.end() && it->second.created >= cutoff) break;
    std::string key = order_.front();
    order_.pop_front();
    EraseLocked(key);
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> InMemorySessionTable::Count() {
  std::lock_guard<std::mutex> lock(mu_);
  return by_id_.size();
}

namespace {

constexpr size_t kKeyHalf = 16;

// CK || IK are sealed with what the session grants as associated data (its
// id, IMSI, device id, group and decoy flag, each length-prefixed), so
// whoever can write the store but lacks the KEK can neither move a box to
// another session nor change whom an answered challenge enrols.
Bytes SessionAad(const Bytes& id, const std::string& imsi,
                 const std::string& device_id, const std::string& group,
                 bool decoy) {
  Bytes aad;
  auto put = [&aad](const uint8_t* p, size_t n) {
    aad.push_back(static_cast<uint8_t>(n >> 8));
    aad.push_back(static_cast<uint8_t>(n));
    aad.insert(aad.end(), p, p + n);
  };
  auto put_str = [&put](const std::string& v) {
    put(reinterpret_cast<const uint8_t*>(v.data()), v.size());
  };
  put(id.data(), id.size());
  put_str(imsi);
  put_str(device_id);
  put_str(group);
  aad.push_back(decoy ? 1 : 0);
  return aad;
}

}  // namespace

absl::Status StoreSessionTable::Insert(Session s) {
  StoredSession st;
  st.id = s.id;
  st.imsi = s.imsi;
  st.rand = s.rand;
  st.autn = s.autn;
  st.xres_hash = XresHash(s.id, s.xres);
  Bytes keys = s.ck;
  keys.insert(keys.end(), s.ik.begin(), s.ik.end());
  {
    std::lock_guard<std::mutex> lock(random_mu_);
    st.sealed_keys = SealBox(
        *kek_.SealingKey(), keys,
        SessionAad(s.id, s.imsi, s.device_id, s.group, s.decoy), random_);
  }
  SecureWipe(keys);
  Wipe(s);
  st.created = s.created;
  st.decoy = s.decoy;
  st.decoy_reason = s.decoy_reason;
  st.device_id = s.device_id;
  st.group = s.group;
  absl::Status put = store_.PutSession(st, caps_);
  if (!put.ok() && !absl::IsAlreadyExists(put)) {
    return absl::UnavailableError(put.message());
  }
  return put;
}

absl::StatusOr<std::optional<Session>> StoreSessionTable::FromStore(
    absl::StatusOr<StoredSession> stored) {
  if (absl::IsNotFound(stored.status())) return std::optional<Session>();
  if (!stored.ok()) return absl::UnavailableError(stored.status().message());
  auto keys = kek_.Open(stored->sealed_keys,
                        SessionAad(stored->id, stored->imsi, stored->device_id,
                                   stored->group, stored->decoy));
  if (!keys.ok() || keys->size() != 2 * kKeyHalf) {
    if (keys.ok()) SecureWipe(*keys);
    return std::optional<Session>();
  }
  Session s;
  s.id = std::move(stored->id);
  s.imsi = std::move(stored->imsi);
  s.rand = std::move(stored->rand);
  s.autn = std::move(stored->autn);
  s.xres_hash = std::move(stored->xres_hash);
  s.ck.assign(keys->begin(), keys->begin() + kKeyHalf);
  s.ik.assign(keys->begin() + kKeyHalf, keys->end());
  SecureWipe(*keys);
  s.created = stored->created;
  s.decoy = stored->decoy;
  s.decoy_reason = std::move(stored->decoy_reason);
  s.device_id = std::move(stored->device_id);
  s.group = std::move(stored->group);
  return std::optional<Session>(std::move(s));
}

absl::StatusOr<std::optional<Session>> StoreSessionTable::Take(
    const Bytes& id) {
  return FromStore(store_.TakeSession(id));
}

absl::StatusOr<std::optional<Session>> StoreSessionTable::TakeByRand(
    const std::string& imsi, const Bytes& rand) {
  return FromStore(store_.TakeSessionByRand(imsi, rand));
}

absl::Status StoreSessionTable::ExpireBefore(absl::Time cutoff) {
  return store_.ExpireSessions(cutoff).status();
}

absl::StatusOr<size_t> StoreSessionTable::Count() {
  auto n = store_.CountSessions("");
  if (!n.ok()) return n.status();
  return static_cast<size_t>(*n);
}

bool RateLimiter::Allow(const std::string& key, absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] =
      buckets_.try_emplace(key, Bucket{static_cast<double>(burst_), now});
  Bucket& b = it->second;
  if (!inserted) {
    double add = absl::FDivDuration(now - b.updated, refill_);
    if (add > 0) {
      b.tokens = std::min<double>(burst_, b.tokens + add);
      b.updated = now;
    }
  }
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

void RateLimiter::ForgetIdle(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Duration full = refill_ * burst_;
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (now - it->second.updated >= full) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace simprov
