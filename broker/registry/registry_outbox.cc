#include "broker/registry/registry_outbox.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "broker/store/cluster_lease.h"
#include "common/atomic_file.h"
#include "common/duration.h"
#include "common/log.h"
#include "common/x509.h"

namespace simprov {

namespace {

constexpr char kRegister[] = "register";
constexpr char kUpdate[] = "update";
// How long the worker leaves a sync group's fresh entries to the enrolment.
constexpr absl::Duration kSyncGrace = absl::Seconds(30);

std::string OneLine(absl::string_view s) {
  std::string out(s.substr(0, 300));
  std::replace(out.begin(), out.end(), '\n', ' ');
  return out;
}

OutboxOptions WithHolder(OutboxOptions o) {
  if (o.holder.empty()) o.holder = absl::StrCat("outbox@", InstanceId());
  return o;
}

}  // namespace

RegistryOutbox::RegistryOutbox(
    Store& store, std::vector<std::unique_ptr<Registry>> registries,
    std::unique_ptr<IssueHook> hook, Clock& clock, Random& random,
    OutboxOptions options)
    : store_(store),
      registries_(std::move(registries)),
      hook_(std::move(hook)),
      clock_(clock),
      options_(WithHolder(std::move(options))),
      pacer_(options_.base_delay, options_.max_delay),
      random_(random) {}

RegistryOutbox::~RegistryOutbox() { Stop(); }

void RegistryOutbox::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (worker_.joinable() || registries_.empty()) return;
  stopping_ = false;
  worker_ = std::thread([this] { WorkerLoop(); });
}

void RegistryOutbox::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void RegistryOutbox::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

std::vector<std::string> RegistryOutbox::RegistryNames() const {
  std::vector<std::string> names;
  for (const auto& r : registries_) names.push_back(r->name());
  return names;
}

Registry* RegistryOutbox::Find(const std::string& name) const {
  for (const auto& r : registries_) {
    if (r->name() == name) return r.get();
  }
  return nullptr;
}

absl::Duration RegistryOutbox::Backoff(int64_t attempts) {
  absl::Duration d = options_.base_delay;
  for (int64_t i = 0; i < attempts && d < options_.max_delay; ++i) d *= 2;
  d = std::min(d, options_.max_delay);
  uint32_t r;
  {
    std::lock_guard<std::mutex> lock(random_mu_);
    Bytes b = random_.Generate(4);
    r = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
        (uint32_t{b[2]} << 8) | b[3];
  }
  // [d/2, d]: never more than the cap, never a thundering herd.
  return d / 2 + (d / 2) * (static_cast<double>(r) / 4294967295.0);
}

void RegistryOutbox::WorkerLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stopping_) return;
    }
    auto n = RunOnce();
    if (!n.ok()) LogError("registry outbox: %s", n.status().message());
    // A full batch delivered: more may be due, so go on at once (the pacing
    // of each registry still applies); otherwise wait to be woken.
    if (n.ok() && static_cast<size_t>(*n) >= options_.batch) continue;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.poll_interval),
                 [this] { return stopping_ || woken_; });
    woken_ = false;
  }
}

absl::StatusOr<int> RegistryOutbox::RunOnce() {
  const absl::Time now = clock_.Now();
  auto removals = store_.EnqueueRemovals(now);
  if (!removals.ok()) return removals.status();
  if (*removals > 0) {
    LogInfo("registry outbox: %d removal(s) queued", *removals);
  }
  const bool leased = options_.lease > absl::ZeroDuration();
  auto due = leased ? store_.ClaimIntents(now, options_.batch, options_.holder,
                                          options_.lease)
                    : store_.DueIntents(now, options_.batch);
  if (!due.ok()) return due.status();
  int delivered = 0;
  // Registries that throttle: the rest of their entries wait for the pause
  // to end (they stay due), the other registries' entries go on.
  std::set<std::string> paused;
  for (const RegistrationIntent& intent : *due) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    // Past the lease another broker may claim what is left: leave it.
    if (leased && clock_.Now() >= now + options_.lease) break;
    if (paused.contains(intent.registry)) continue;
    absl::Status s = Deliver(intent);
    if (s.ok()) {
      ++delivered;
    } else if (IsThrottled(s, nullptr)) {
      paused.insert(intent.registry);
    }
  }
  return delivered;
}

bool RegistryOutbox::WaitForSlot(const Registry& registry) {
  while (true) {
    RegistryPacer::SteadyTime at;
    switch (pacer_.Acquire(registry.name(), registry.rate(),
                           std::chrono::steady_clock::now(), &at)) {
      case RegistryPacer::Slot::kGo:
        return true;
      case RegistryPacer::Slot::kPaused:
        return false;
      case RegistryPacer::Slot::kWait:
        break;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_until(lock, at, [this] { return stopping_; })) return false;
  }
}

absl::Status RegistryOutbox::Deliver(const RegistrationIntent& intent) {
  Registry* registry = Find(intent.registry);
  if (registry != nullptr && !WaitForSlot(*registry)) {
    return ThrottledError(absl::StrCat("registry ", intent.registry,
                                       " is paused after a throttling answer"),
                          absl::ZeroDuration());
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!in_flight_.insert(intent.id).second) {
      return absl::AbortedError("already being delivered");
    }
    device_cv_.wait(lock,
                    [&] { return !busy_devices_.contains(intent.device_id); });
    busy_devices_.insert(intent.device_id);
  }
  absl::Status result;
  std::string answer;
  auto device = DeviceRegistration::FromJson(intent.payload);
  if (registry == nullptr) {
    result = absl::FailedPreconditionError(absl::StrCat(
        "registry ", intent.registry, " is not configured on this broker"));
  } else if (!device.ok()) {
    result = device.status();
  } else {
    result = Attempt(intent, *registry, *device, &answer);
  }
  const absl::Time now = clock_.Now();
  absl::Status recorded;
  absl::Duration retry_after;
  if (IsThrottled(result, &retry_after)) {
    // Not the entry's fault: nothing is recorded, it stays due, and the
    // whole registry pauses.
    const absl::Duration pause = pacer_.Throttled(
        intent.registry, retry_after, std::chrono::steady_clock::now());
    if (on_throttled_) on_throttled_(intent.registry);
    LogWarning(
        "registry %s is throttling (%s): every delivery to it pauses for %s "
        "(not counted as a failed attempt)",
        intent.registry, OneLine(result.message()),
        absl::FormatDuration(pause));
  } else if (result.code() == absl::StatusCode::kCancelled) {
    // An update of a certificate revoked meanwhile: its removal follows.
    recorded = store_.FinishIntent(intent.id, "skipped", "", now);
  } else if (result.ok()) {
    pacer_.Delivered(intent.registry);
    recorded = store_.FinishIntent(intent.id, "done", answer, now);
    (void)store_.AppendAudit(
        {now, "broker", "registry-" + intent.kind, intent.imsi, "ok",
         absl::StrCat("registry=", intent.registry, " serial=", intent.serial,
                      " device_id=", intent.device_id)});
    LogInfo("registry %s: %s of device %s (serial %s) done after %d attempt(s)",
            intent.registry, intent.kind, intent.device_id, intent.serial,
            intent.attempts + 1);
  } else {
    pacer_.Delivered(intent.registry);
    const absl::Duration wait = Backoff(intent.attempts);
    recorded =
        store_.DeferIntent(intent.id, OneLine(result.message()), now + wait);
    LogWarning(
        "registry %s: %s of device %s failed (attempt %d), retry in "
        "%s: %s",
        intent.registry, intent.kind, intent.device_id, intent.attempts + 1,
        absl::FormatDuration(wait), OneLine(result.message()));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(intent.id);
    busy_devices_.erase(intent.device_id);
  }
  device_cv_.notify_all();
  if (!recorded.ok()) return recorded;
  return result;
}

absl::Status RegistryOutbox::Attempt(const RegistrationIntent& intent,
                                     Registry& registry,
                                     const DeviceRegistration& device,
                                     std::string* answer) {
  if (intent.kind == kRegister || intent.kind == kUpdate) {
    if (intent.kind == kUpdate) {
      auto cert = store_.GetCertificate(intent.serial);
      if (!cert.ok()) return cert.status();
      if (cert->status == "revoked") {
        return absl::CancelledError("certificate revoked");
      }
    }
    auto r = registry.Register(device);
    if (!r.ok()) return r.status();
    *answer = *r;
    return absl::OkStatus();
  }
  auto still_valid = StillValid(intent);
  if (!still_valid.ok()) return still_valid.status();
  return registry.Remove(device, intent.result, *still_valid);
}

absl::StatusOr<std::string> RegistryOutbox::BeforeSigning(
    const IssuanceContext& c) {
  if (!hook_) return std::string();
  return hook_->Call(c);
}

absl::StatusOr<std::vector<RegistrationIntent>> RegistryOutbox::Intents(
    const IssuanceContext& c, const CertificateRecord& cert,
    const std::string& hook_details) {
  std::vector<RegistrationIntent> out;
  if (registries_.empty()) return out;
  nlohmann::json details =
      hook_details.empty()
          ? nlohmann::json::object()
          : nlohmann::json::parse(hook_details, nullptr, false);
  if (!details.is_object()) details = nlohmann::json::object();
  auto targets = TargetsFor(c.policy, c.values.group, false);
  if (!targets.ok()) return targets.status();
  auto leaf = CertFromDer(cert.der);
  if (!leaf.ok()) return leaf.status();
  const std::string pem = CertToPem(leaf->get());
  for (const Target& t : *targets) {
    DeviceRegistration d;
    d.serial = cert.serial;
    d.imsi = cert.imsi;
    d.device_id = cert.device_id;
    d.group = c.values.group;
    d.cert_pem = pem;
    if (details.contains("thing")) {
      d.thing = details["thing"].get<std::string>();
      d.thing_from_hook = true;
    } else {
      auto thing = ExpandTemplate(t.thing_template, c.values);
      if (!thing.ok()) return thing.status();
      d.thing = *thing;
    }
    if (details.contains("topics")) {
      d.topics = details["topics"].get<std::vector<std::string>>();
      d.topics_from_hook = true;
    } else {
      for (const std::string& tt : t.topic_templates) {
        auto topic = ExpandTemplate(tt, c.values);
        if (!topic.ok()) return topic.status();
        d.topics.push_back(*topic);
      }
    }
    RegistrationIntent intent;
    intent.registry = t.registry->name();
    intent.kind = kRegister;
    intent.serial = cert.serial;
    intent.imsi = cert.imsi;
    intent.device_id = cert.device_id;
    intent.payload = d.ToJson();
    intent.created_at = cert.issued_at;
    // A sync group's enrolment delivers itself (AfterRecorded); the worker
    // takes over only if the broker dies in between.
    intent.next_attempt_at =
        cert.issued_at + (c.policy != nullptr && c.policy->sync_registration
                              ? kSyncGrace
                              : absl::ZeroDuration());
    out.push_back(std::move(intent));
  }
  return out;
}

absl::Status RegistryOutbox::AfterRecorded(const IssuanceContext& c,
                                           const CertificateRecord& cert) {
  if (c.policy == nullptr || !c.policy->sync_registration) {
    Wake();
    return absl::OkStatus();
  }
  auto intents = store_.IntentsOf(cert.serial);
  if (!intents.ok()) return absl::UnavailableError("store unavailable; retry");
  absl::Status failed;
  for (const RegistrationIntent& i : *intents) {
    if (i.state != "pending" || i.kind != kRegister) continue;
    absl::Status s = Deliver(i);
    if (!s.ok()) {
      failed = absl::UnavailableError(
          absl::StrCat("registry ", i.registry,
                       " is unavailable (this group registers "
                       "synchronously); retry later: ",
                       OneLine(s.message())));
      break;
    }
  }
  if (failed.ok()) return failed;
  // Never handed out: cancel what waits and revoke it (removals follow for
  // registries that did take it).
  const absl::Time now = clock_.Now();
  for (const RegistrationIntent& i : *intents) {
    (void)store_.FinishIntent(i.id, "cancelled", "", now);
  }
  RevocationRequest r;
  r.serial = cert.serial;
  r.reason = "cessationOfOperation";
  r.at = now;
  (void)store_.RevokeCertificates(
      r, {now, cert.imsi, "registry-sync", cert.serial, "failed",
          OneLine(failed.message())});
  Wake();
  return failed;
}

absl::StatusOr<nlohmann::json> RegistryOutbox::StatusOf(
    const std::string& serial) {
  auto intents = store_.IntentsOf(serial);
  if (!intents.ok()) return intents.status();
  nlohmann::json regs = nlohmann::json::array();
  bool pending = false;
  bool any = false;
  std::set<std::string> seen;
  for (const RegistrationIntent& first : *intents) {
    if (first.kind != kRegister || !seen.insert(first.registry).second) {
      continue;
    }
    // The update entry, if any, says what the registry holds now.
    const RegistrationIntent* cur = &first;
    for (const RegistrationIntent& u : *intents) {
      if (u.kind == kUpdate && u.registry == first.registry) cur = &u;
    }
    const RegistrationIntent& i = *cur;
    any = true;
    nlohmann::json entry = nlohmann::json::object();
    const Registry* r = Find(i.registry);
    auto device = DeviceRegistration::FromJson(i.payload);
    if (r != nullptr && device.ok()) entry = r->ConnectionInfo(*device);
    entry["registry"] = i.registry;
    entry["state"] = i.state == "done" ? "registered" : i.state;
    if (i.state == "pending") {
      pending = true;
      if (!i.last_error.empty()) entry["last_error"] = i.last_error;
      entry["attempts"] = i.attempts;
    }
    regs.push_back(std::move(entry));
  }
  nlohmann::json j;
  j["status"] = !any ? "none" : pending ? "pending" : "registered";
  j["registries"] = std::move(regs);
  return j;
}

std::string RegistryOutbox::RegistryInfo(const CertificateRecord& cert) {
  if (registries_.empty()) return "";
  auto s = StatusOf(cert.serial);
  if (!s.ok()) return "";
  return s->dump();
}

std::string RegistryStatusLine(const std::vector<RegistrationIntent>& intents) {
  std::map<std::string, std::string> state;  // by registry; later entries win
  for (const RegistrationIntent& i : intents) {  // in id order
    std::string& st = state[i.registry];
    if (i.kind == kUpdate && i.state != "pending") continue;
    if (i.kind == kRegister || i.kind == kUpdate) {
      st = i.state == "done"      ? "registered"
           : i.state == "pending" ? absl::StrCat("pending(", i.attempts, ")")
                                  : i.state;
    } else if (i.state == "done") {
      st = "removed";
    } else if (i.state == "pending") {
      st = "removing";
    }
  }
  if (state.empty()) return "-";
  std::vector<std::string> parts;
  for (const auto& [name, st] : state) parts.push_back(name + ":" + st);
  return absl::StrJoin(parts, ",");
}

absl::StatusOr<std::unique_ptr<RegistryOutbox>> ConfigureRegistries(
    const RegistryFlags& flags, Store& store, Clock& clock, Random& random) {
  std::vector<std::string> urls = flags.registries;
  if (!flags.registry_file.empty()) {
    auto more = ReadRegistryFile(flags.registry_file);
    if (!more.ok()) return more.status();
    urls.insert(urls.end(), more->begin(), more->end());
  }
  std::vector<std::unique_ptr<Registry>> registries;
  std::set<std::string> names;
  for (const std::string& text : urls) {
    auto url = ParseRegistryUrl(text);
    if (!url.ok()) return url.status();
    if (!names.insert(url->name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("two registries are named '", url->name,
                       "': give each a distinct name= in its URL"));
    }
    auto r = NewRegistry(*url, clock);
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          absl::StrCat("registry ", url->Redacted(), ": ",
                                       r.status().message()));
    }
    LogInfo("registry %s: %s", url->name, url->Redacted());
    registries.push_back(std::move(*r));
  }
  std::unique_ptr<IssueHook> hook;
  if (!flags.issue_hook.empty()) {
    IssueHookOptions o;
    o.url = flags.issue_hook;
    std::string secret;
    if (!flags.issue_hook_secret_file.empty()) {
      auto text = ReadFileToString(flags.issue_hook_secret_file, 4096);
      if (!text.ok()) return text.status();
      secret = std::string(absl::StripAsciiWhitespace(*text));
    } else if (const char* env = std::getenv("SIMPROV_ISSUE_HOOK_SECRET")) {
      secret = env;
    }
    o.secret = ToBytes(secret);
    auto timeout = ParseHumanDuration(flags.issue_hook_timeout);
    if (!timeout.ok()) return timeout.status();
    if (*timeout <= absl::ZeroDuration() || *timeout > absl::Seconds(60)) {
      return absl::InvalidArgumentError(
          "--issue-hook-timeout must be between 1ms and 60s");
    }
    o.timeout = *timeout;
    o.allow_on_timeout = flags.issue_hook_allow_on_timeout;
    auto h = IssueHook::Create(std::move(o), clock);
    if (!h.ok()) return h.status();
    hook = std::move(*h);
  }
  // One broker on its own store needs no claims (and a restart after a
  // crash must not wait for its old leases).
  OutboxOptions options;
  if (!store.IsShared()) options.lease = absl::ZeroDuration();
  return std::make_unique<RegistryOutbox>(
      store, std::move(registries), std::move(hook), clock, random, options);
}

}  // namespace simprov
