// RegistryOutbox, per device: where a group's devices are registered, what
// of a device is still registered when one of its certificates goes, and
// registering a group's devices again when its policy changed.
#include "absl/strings/str_cat.h"
#include "broker/registry/registry_outbox.h"
#include "common/log.h"
#include "common/x509.h"

namespace simprov {

namespace {

constexpr char kRegister[] = "register";
constexpr char kUpdate[] = "update";
constexpr char kRemove[] = "remove";
// Requeued registrations are written this many at a time.
constexpr size_t kRequeueBatch = 256;
// Subscribers are read this many at a time.
constexpr size_t kSubscriberPage = 512;

bool Live(const CertificateRecord& c, absl::Time now) {
  return c.status == "valid" && c.not_after > now;
}

}  // namespace

const RegistrationIntent* CurrentRegistration(
    const std::vector<RegistrationIntent>& intents,
    const std::string& registry) {
  const RegistrationIntent* reg = nullptr;
  const RegistrationIntent* update = nullptr;
  for (const RegistrationIntent& i : intents) {
    if (i.registry != registry) continue;
    if (i.kind == kRemove) return nullptr;
    if (i.kind == kRegister) reg = &i;
    if (i.kind == kUpdate) update = &i;
  }
  return update != nullptr ? update : reg;
}

absl::StatusOr<std::vector<RegistryOutbox::Target>> RegistryOutbox::TargetsFor(
    const GroupPolicy* policy, const std::string& group,
    bool skip_unknown) const {
  std::vector<Target> targets;
  if (policy != nullptr && !policy->registries.empty()) {
    for (const RegistryBinding& b : policy->registries) {
      const Registry* r = Find(b.target);
      if (r == nullptr) {
        if (skip_unknown) continue;
        return absl::FailedPreconditionError(absl::StrCat(
            "group ", group, " registers with '", b.target,
            "', which is not a registry of this broker (--registry name=)"));
      }
      targets.push_back({r,
                         b.thing_template.empty() ? r->DefaultThingTemplate()
                                                  : b.thing_template,
                         b.topic_templates.empty() ? r->DefaultTopicTemplates()
                                                   : b.topic_templates});
    }
  } else {
    for (const auto& r : registries_) {
      targets.push_back(
          {r.get(), r->DefaultThingTemplate(), r->DefaultTopicTemplates()});
    }
  }
  return targets;
}

absl::StatusOr<std::vector<DeviceRegistration>> RegistryOutbox::StillValid(
    const RegistrationIntent& removal) {
  const absl::Time now = clock_.Now();
  std::vector<std::string> imsis = {removal.imsi};
  if (!removal.device_id.empty()) {
    auto holder = store_.GetSubscriberByDeviceId(removal.device_id);
    if (holder.ok()) {
      if (holder->imsi != removal.imsi) imsis.push_back(holder->imsi);
    } else if (holder.status().code() != absl::StatusCode::kNotFound) {
      return holder.status();
    }
  }
  std::vector<DeviceRegistration> out;
  for (const std::string& imsi : imsis) {
    auto sub = store_.GetSubscriber(imsi);
    if (!sub.ok()) {
      if (sub.status().code() == absl::StatusCode::kNotFound) continue;
      return sub.status();
    }
    if (sub->status == kStatusTerminated) continue;
    auto certs = store_.CertificatesOf(imsi);
    if (!certs.ok()) return certs.status();
    for (const CertificateRecord& c : *certs) {
      if (c.serial == removal.serial || !Live(c, now)) continue;
      auto intents = store_.IntentsOf(c.serial);
      if (!intents.ok()) return intents.status();
      const RegistrationIntent* cur =
          CurrentRegistration(*intents, removal.registry);
      if (cur == nullptr || (cur->state != "pending" && cur->state != "done")) {
        continue;
      }
      auto d = DeviceRegistration::FromJson(cur->payload);
      if (d.ok()) out.push_back(std::move(*d));
    }
  }
  return out;
}

absl::StatusOr<int64_t> RegistryOutbox::ReregisterGroup(
    const GroupPolicy& policy) {
  if (registries_.empty()) return 0;
  auto targets = TargetsFor(&policy, policy.name, /*skip_unknown=*/true);
  if (!targets.ok()) return targets.status();
  const absl::Time now = clock_.Now();
  int64_t queued = 0;
  std::vector<RegistrationIntent> batch;
  auto flush = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    auto n = store_.RequeueRegistrations(batch);
    if (!n.ok()) return n.status();
    queued += *n;
    batch.clear();
    return absl::OkStatus();
  };
  SubscriberFilter filter;
  filter.group = policy.name;
  filter.provisioned_only = true;
  filter.limit = kSubscriberPage;
  while (true) {
    // A page first, then the per-certificate reads (the store's readers
    // are not reentrant).
    std::vector<SubscriberRecord> page;
    absl::Status s =
        store_.ListSubscribersPage(filter, [&](const SubscriberRecord& r) {
          page.push_back(r);
          return true;
        });
    if (!s.ok()) return s;
    if (page.empty()) break;
    filter.after = page.back().imsi;
    for (const SubscriberRecord& sub : page) {
      if (sub.status != kStatusActive && sub.status != kStatusSuspended)
        continue;
      TemplateValues values;
      values.device_id = sub.device_id;
      values.imsi = sub.imsi;
      values.imei = sub.imei;
      values.iccid = sub.iccid;
      values.msisdn = sub.msisdn;
      values.group = sub.group;
      auto certs = store_.CertificatesOf(sub.imsi);
      if (!certs.ok()) return certs.status();
      for (const CertificateRecord& c : *certs) {
        if (!Live(c, now)) continue;
        auto intents = store_.IntentsOf(c.serial);
        if (!intents.ok()) return intents.status();
        for (const Target& t : *targets) {
          const std::string& name = t.registry->name();
          bool removed = false;
          for (const RegistrationIntent& i : *intents) {
            if (i.registry == name && i.kind == kRemove) removed = true;
          }
          if (removed) continue;
          const RegistrationIntent* cur = CurrentRegistration(*intents, name);
          if (cur != nullptr && cur->state != "pending" &&
              cur->state != "done") {
            continue;  // cancelled or skipped: never handed out
          }
          DeviceRegistration prev;
          if (cur != nullptr) {
            auto p = DeviceRegistration::FromJson(cur->payload);
            if (p.ok()) prev = std::move(*p);
          }
          DeviceRegistration d;
          d.serial = c.serial;
          d.imsi = c.imsi;
          d.device_id = c.device_id;
          d.group = sub.group;
          d.cert_pem = prev.cert_pem;
          if (d.cert_pem.empty()) {
            auto leaf = CertFromDer(c.der);
            if (!leaf.ok()) return leaf.status();
            d.cert_pem = CertToPem(leaf->get());
          }
          absl::Status expanded = absl::OkStatus();
          if (prev.thing_from_hook) {
            d.thing = prev.thing;
            d.thing_from_hook = true;
          } else {
            auto thing = ExpandTemplate(t.thing_template, values);
            if (thing.ok()) d.thing = *thing;
            expanded.Update(thing.status());
          }
          if (prev.topics_from_hook) {
            d.topics = prev.topics;
            d.topics_from_hook = true;
          } else {
            for (const std::string& tt : t.topic_templates) {
              auto topic = ExpandTemplate(tt, values);
              if (topic.ok()) d.topics.push_back(*topic);
              expanded.Update(topic.status());
            }
          }
          if (!expanded.ok()) {
            LogWarning(
                "registry %s: device %s (serial %s) not registered "
                "again: %s",
                name, c.device_id, c.serial, expanded.message());
            continue;
          }
          if (cur != nullptr && prev.thing == d.thing &&
              prev.topics == d.topics && prev.group == d.group) {
            continue;  // already what the policy gives
          }
          RegistrationIntent intent;
          intent.registry = name;
          intent.kind = kRegister;
          intent.serial = c.serial;
          intent.imsi = c.imsi;
          intent.device_id = c.device_id;
          intent.payload = d.ToJson();
          intent.created_at = now;
          intent.next_attempt_at = now;
          batch.push_back(std::move(intent));
          if (batch.size() >= kRequeueBatch) {
            if (absl::Status f = flush(); !f.ok()) return f;
          }
        }
      }
    }
  }
  if (absl::Status f = flush(); !f.ok()) return f;
  if (queued > 0) {
    LogInfo("registry outbox: group %s changed: %d registration(s) queued",
            policy.name, queued);
    Wake();
  }
  return queued;
}

}  // namespace simprov
