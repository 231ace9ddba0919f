#include "broker/enrol/session_table.h"

#include <algorithm>

namespace simprov {

namespace {
std::string Key(const Bytes& id) { return std::string(id.begin(), id.end()); }

void Wipe(Session& s) {
  SecureWipe(s.xres);
  SecureWipe(s.ck);
  SecureWipe(s.ik);
}
}  // namespace

void SessionTable::EraseLocked(const std::string& key) {
  auto it = by_id_.find(key);
  if (it == by_id_.end()) return;
  Session s = RemoveLocked(it);
  Wipe(s);
}

void SessionTable::Insert(Session s) {
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
}

Session SessionTable::RemoveLocked(
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

std::optional<Session> SessionTable::Take(const Bytes& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(Key(id));
  if (it == by_id_.end()) return std::nullopt;
  return RemoveLocked(it);
}

std::optional<Session> SessionTable::TakeByRand(const std::string& imsi,
                                                const Bytes& rand) {
  std::lock_guard<std::mutex> lock(mu_);
  auto list = by_imsi_.find(imsi);
  if (list == by_imsi_.end()) return std::nullopt;
  for (const std::string& key : list->second) {
    auto it = by_id_.find(key);
    if (it != by_id_.end() && ConstantTimeEqual(it->second.rand, rand)) {
      return RemoveLocked(it);  // invalidates `list`; we return at once
    }
  }
  return std::nullopt;
}

void SessionTable::ExpireBefore(absl::Time cutoff) {
  std::lock_guard<std::mutex> lock(mu_);
  while (!order_.empty()) {
    auto it = by_id_.find(order_.front());
    if (it != by_id_.end() && it->second.created >= cutoff) break;
    std::string key = order_.front();
    order_.pop_front();
    EraseLocked(key);
  }
}

size_t SessionTable::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return by_id_.size();
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
