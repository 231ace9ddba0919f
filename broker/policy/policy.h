// Group policies: what a group's devices get (docs/fleet.md).
//
// A policy is a JSON object with these keys (any other key is an error
// that names it):
//   name           1-64 letters, digits, '-', '_' or '.' (required)
//   subject        "CN=cam-#{imsi}" or several RDNs "CN=..,O=..,OU=.."
//                  (default "CN=#{imsi}")
//   cert_ttl       "7200s", "30d", ... counted from issuance (default: the
//                  broker's --cert-ttl)
//   san            {"dns": [templates], "uri": [templates]}; the device-id
//                  URI urn:simprov:device:<id> is always added
//   key_types      subset of ["p256", "p384", "ed25519", "rsa"] (default all)
//   token          {"audiences": [..], "max_ttl": "1h",
//                   "identifiers": subset of ["imsi", "iccid", "imei"],
//                   "scopes": [..] (the scopes a device may ask for;
//                   default none)}
//   registries     [{"target": NAME, "thing": template,
//                    "topics": [templates], "wildcards": "device"|"any"}]
//   registration   "async" (default) or "sync": answer a bootstrap only
//                  after the registry delivery succeeded
//   imei_lock      true: the first IMEI seen binds the subscriber
//   supersede_grace  how long a certificate superseded by a newer one of
//                  its device stays off the CRL (default "10m", 1s to 1d)
// Templates may use #{device_id} #{imsi} #{imei} #{iccid} #{msisdn}
// #{group}; an unknown placeholder is an error naming it.
//
// The token and registry keys are parsed, validated and kept here; the
// token and registry code consume them through GroupPolicy.
#ifndef SIMPROV_BROKER_POLICY_POLICY_H_
#define SIMPROV_BROKER_POLICY_POLICY_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace simprov {

// The values a template may use. An empty value used by a template makes
// the expansion fail (the message names the placeholder).
struct TemplateValues {
  std::string device_id;
  std::string imsi;
  std::string imei;
  std::string iccid;
  std::string msisdn;
  std::string group;
};

// Replaces every #{name}. InvalidArgument naming an unknown placeholder or
// an unterminated "#{"; FailedPrecondition naming a placeholder whose value
// is empty.
absl::StatusOr<std::string> ExpandTemplate(absl::string_view tmpl,
                                           const TemplateValues& values);
// Only the syntax and the placeholder names (no values needed).
absl::Status CheckTemplate(absl::string_view tmpl);

struct SubjectAttribute {
  std::string type;            // X.509 short name: CN, O, OU, C, L, ST, ...
  std::string value_template;  // expanded at issuance
};

struct TokenPolicy {
  std::vector<std::string> audiences;
  std::optional<absl::Duration> max_ttl;  // unset: the broker's default
  // imsi, iccid, imei; unset: all of them (when known).
  std::optional<std::vector<std::string>> identifiers;
  // The scopes a device may ask for; empty: none.
  std::vector<std::string> scopes;
};

struct RegistryBinding {
  std::string target;  // a registry configured on the broker
  std::string thing_template;
  std::vector<std::string> topic_templates;
  // "wildcards": "any": topic wildcards anywhere (CheckTopicFilter); the
  // default "device" allows them only below a level naming the device.
  bool any_wildcards = false;
};

struct GroupPolicy {
  std::string name;
  std::vector<SubjectAttribute> subject;   // in order; never empty
  std::optional<absl::Duration> cert_ttl;  // unset: the broker's --cert-ttl
  std::vector<std::string> san_dns_templates;
  std::vector<std::string> san_uri_templates;
  std::vector<std::string> key_types;  // empty: all
  TokenPolicy token;
  std::vector<RegistryBinding> registries;
  bool sync_registration = false;
  bool imei_lock = false;
  // A superseded certificate is revoked ("superseded") this long after the
  // newer one was issued, so an application connection is not cut
  // mid-switch. It renews and gets tokens no more from the start.
  absl::Duration supersede_grace = absl::Minutes(10);

  // True if a CSR key of ParseAndVerifyCsr's key_type ("P-256", "P-384",
  // "Ed25519", "RSA-2048", ...) is allowed.
  bool AllowsKeyType(absl::string_view csr_key_type) const;
};

// The policy of a group that has none stored (e.g. "default"): subject
// CN=#{imsi}, the broker's lifetime, every key type.
GroupPolicy ImplicitPolicy(const std::string& name);

// Parses one group object (JSON text of an object). Errors name the key.
absl::StatusOr<GroupPolicy> ParseGroupPolicy(absl::string_view json);

// Parses a groups file {"groups": [ {...}, ... ]}: each policy and its
// canonical JSON text (to store). Errors name the group and the key.
absl::StatusOr<std::vector<std::pair<GroupPolicy, std::string>>>
ParseGroupsFile(absl::string_view text);

// Group names: 1-64 letters, digits, '-', '_' or '.'.
bool IsValidGroupName(absl::string_view name);

// Registry values: one rule for a group's thing and topic templates (checked
// when the group is applied) and for the issue hook's literal answers.
//
// A topic filter: 1-512 bytes of MQTT filter syntax ('+' a whole level, '#'
// only the whole last level, no NUL) whose wildcards, unless
// `any_wildcards`, all lie below a level naming the device: a level that
// contains one of `device_values` (DeviceNamingValues). InvalidArgument
// naming the topic and the rule.
absl::Status CheckTopicFilter(absl::string_view topic,
                              const std::vector<std::string>& device_values,
                              bool any_wildcards);
// The same for a template: the levels naming the device are those with a
// #{device_id}, #{imsi}, #{iccid}, #{imei} or #{msisdn} (not #{group},
// which many devices share).
absl::Status CheckTopicTemplate(absl::string_view tmpl, bool any_wildcards);
// The non-empty device id, IMSI, ICCID, IMEI and MSISDN of `values`.
std::vector<std::string> DeviceNamingValues(const TemplateValues& values);
// A thing name (AWS IoT thing, MQTT client id): 1-128 letters, digits, ':',
// '_', '-' or '.'; for a template, its literal text (placeholders expand to
// such characters).
absl::Status CheckThingName(absl::string_view thing);
absl::Status CheckThingTemplate(absl::string_view tmpl);

// The subject as (type, expanded value) pairs.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ExpandSubject(
    const GroupPolicy& policy, const TemplateValues& values);

}  // namespace simprov

#endif  // SIMPROV_BROKER_POLICY_POLICY_H_
