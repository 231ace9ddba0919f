// Group policies and templates (broker/policy): one policy object, a groups
// file, and templates. What parses must also work downstream: every
// template of a parsed policy expands with all values set, a groups file's
// canonical text parses again, and a template that passes CheckTemplate
// expands.
//
// Input: one selector byte (mod 3), then: 0 a policy object (JSON), 1 a
// groups file {"groups": [...]}, 2 a template.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "broker/policy/policy.h"

namespace {

using namespace simprov;

const TemplateValues kValues = {"d-1",
                                "001010123456789",
                                "356938035643809",
                                "8988211000000000001",
                                "4915112345678",
                                "cams"};

void Check(bool ok) {
  if (!ok) abort();
}

void ExpandAll(const GroupPolicy& p) {
  (void)ExpandSubject(p, kValues);  // may refuse a value, by design
  for (const std::string& t : p.san_dns_templates) {
    Check(ExpandTemplate(t, kValues).ok());
  }
  for (const std::string& t : p.san_uri_templates) {
    Check(ExpandTemplate(t, kValues).ok());
  }
  for (const RegistryBinding& r : p.registries) {
    Check(ExpandTemplate(r.thing_template, kValues).ok());
    for (const std::string& t : r.topic_templates) {
      Check(ExpandTemplate(t, kValues).ok());
    }
  }
  for (const char* k : {"P-256", "P-384", "Ed25519", "RSA-2048", "RSA-1024"}) {
    (void)p.AllowsKeyType(k);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  absl::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      absl::StatusOr<GroupPolicy> p = ParseGroupPolicy(in);
      if (p.ok()) ExpandAll(*p);
      break;
    }
    case 1: {
      auto groups = ParseGroupsFile(in);
      if (!groups.ok()) break;
      for (const auto& [policy, canonical] : *groups) {
        Check(IsValidGroupName(policy.name));
        absl::StatusOr<GroupPolicy> again = ParseGroupPolicy(canonical);
        Check(again.ok() && again->name == policy.name);
        ExpandAll(policy);
      }
      break;
    }
    case 2: {
      const bool valid = CheckTemplate(in).ok();
      absl::StatusOr<std::string> out = ExpandTemplate(in, kValues);
      Check(valid == out.ok());
      (void)ExpandTemplate(in, TemplateValues());
      break;
    }
  }
  return 0;
}
