#include "broker/config_file.h"

#include <toml++/toml.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <set>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"

namespace simprov {
namespace {

constexpr size_t kMaxSecretFileBytes = 64 * 1024;
constexpr size_t kMaxConfigBytes = 1024 * 1024;

std::string EnvName(const std::string& prefix, const std::string& flag) {
  std::string name = absl::AsciiStrToUpper(flag);
  absl::StrReplaceAll({{"-", "_"}}, &name);
  return prefix + name;
}

// The long name without dashes, or "" (positional or short-only).
std::string LongName(const CLI::Option* opt) {
  if (opt->get_lnames().empty()) return "";
  return opt->get_lnames().front();
}

absl::StatusOr<std::string> ReadSecret(const std::string& path) {
  auto text = ReadFileToString(path, kMaxSecretFileBytes);
  if (!text.ok()) return text.status();
  std::string v = *std::move(text);
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

// CLI11's reader for --config: our TOML/YAML subset, keys checked against
// the app's options.
class FlagConfig final : public CLI::Config {
 public:
  explicit FlagConfig(CLI::App* app) : app_(app) {}

  std::string to_config(const CLI::App*, bool, bool,
                        std::string) const override {
    return "";
  }

  std::vector<CLI::ConfigItem> from_config(std::istream& in) const override {
    std::string path;
    if (const CLI::Option* c = app_->get_config_ptr();
        c != nullptr && !c->results().empty()) {
      path = c->results().back();
    }
    const bool yaml =
        absl::EndsWith(path, ".yaml") || absl::EndsWith(path, ".yml");
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    auto entries = ParseConfigText(text, yaml);
    if (!entries.ok()) {
      throw CLI::ConfigError(
          absl::StrCat(path, ": ", entries.status().message()));
    }
    std::vector<CLI::ConfigItem> items;
    std::set<std::string> seen;
    for (ConfigEntry& e : *entries) {
      std::string key = e.key;
      absl::StrReplaceAll({{"_", "-"}}, &key);
      if (!seen.insert(key).second) {
        throw CLI::ConfigError(absl::StrCat(path, ":", e.line, ": key \"",
                                            e.key, "\" given twice"));
      }
      const CLI::Option* opt = app_->get_option_no_throw("--" + key);
      if (opt == nullptr && absl::EndsWith(key, "-file")) {
        // NAME-file: the value of --NAME from a file.
        std::string base = key.substr(0, key.size() - 5);
        const CLI::Option* target = app_->get_option_no_throw("--" + base);
        if (target != nullptr && target->get_configurable()) {
          if (e.values.size() != 1) {
            throw CLI::ConfigError(absl::StrCat(path, ":", e.line, ": ", e.key,
                                                " takes one file name"));
          }
          auto secret = ReadSecret(e.values[0]);
          if (!secret.ok()) {
            throw CLI::ConfigError(absl::StrCat(path, ":", e.line, ": ", e.key,
                                                ": ",
                                                secret.status().message()));
          }
          key = base;
          e.values = {*std::move(secret)};
          opt = target;
        }
      }
      if (opt == nullptr || !opt->get_configurable() ||
          opt == app_->get_config_ptr()) {
        throw CLI::ConfigError(absl::StrCat(path, ":", e.line,
                                            ": unknown key \"", e.key,
                                            "\" (keys are the long flags)"));
      }
      CLI::ConfigItem item;
      item.name = key;
      item.inputs = std::move(e.values);
      items.push_back(std::move(item));
    }
    return items;
  }

 private:
  CLI::App* app_;
};

}  // namespace

namespace {

// A line number from a parser's source position: 1-based (yaml-cpp counts
// from 0 and marks some nodes -1; toml++ from 1, 0 when unknown).
int LineOf(int64_t line) {
  return static_cast<int>(std::max<int64_t>(1, line));
}

absl::Status LineError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

// One TOML scalar as the flag's text.
absl::StatusOr<std::string> TomlScalar(const toml::node& node,
                                       const std::string& key) {
  const int line = LineOf(node.source().begin.line);
  if (const auto* v = node.as_string()) return std::string(v->get());
  if (const auto* v = node.as_integer()) return absl::StrCat(v->get());
  if (const auto* v = node.as_floating_point()) return absl::StrCat(v->get());
  if (const auto* v = node.as_boolean()) {
    return std::string(v->get() ? "true" : "false");
  }
  if (node.is_table()) {
    return LineError(line, absl::StrCat(key,
                                        ": sections and tables are not "
                                        "supported (flat keys only)"));
  }
  return LineError(line, absl::StrCat(key,
                                      ": expected a string, number, boolean "
                                      "or an array of them"));
}

absl::StatusOr<std::vector<ConfigEntry>> ParseToml(absl::string_view text) {
  toml::table table;
  try {
    table = toml::parse(std::string_view(text.data(), text.size()));
  } catch (const toml::parse_error& e) {
    return LineError(LineOf(e.source().begin.line),
                     std::string(e.description()));
  }
  std::vector<ConfigEntry> out;
  for (const auto& [k, node] : table) {
    ConfigEntry e;
    e.key = std::string(k.str());
    e.line = LineOf(node.source().begin.line);
    if (const toml::array* array = node.as_array()) {
      for (const toml::node& item : *array) {
        if (item.is_array()) {
          return LineError(e.line, absl::StrCat(e.key,
                                                ": nested arrays are "
                                                "not supported"));
        }
        auto v = TomlScalar(item, e.key);
        if (!v.ok()) return v.status();
        e.values.push_back(*std::move(v));
      }
    } else {
      auto v = TomlScalar(node, e.key);
      if (!v.ok()) return v.status();
      e.values.push_back(*std::move(v));
    }
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::vector<ConfigEntry>> ParseYaml(absl::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return LineError(LineOf(e.mark.line + 1), e.msg);
  }
  std::vector<ConfigEntry> out;
  if (root.IsNull()) return out;  // an empty file
  if (!root.IsMap()) {
    return LineError(LineOf(root.Mark().line + 1),
                     "expected a map of key: value");
  }
  for (const auto& kv : root) {
    ConfigEntry e;
    e.line = LineOf(kv.first.Mark().line + 1);
    if (!kv.first.IsScalar()) return LineError(e.line, "expected a plain key");
    e.key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (v.IsScalar()) {
      e.values.push_back(v.Scalar());
    } else if (v.IsSequence()) {
      for (const YAML::Node& item : v) {
        if (!item.IsScalar()) {
          return LineError(LineOf(item.Mark().line + 1),
                           absl::StrCat(e.key,
                                        ": list items must be plain "
                                        "values"));
        }
        e.values.push_back(item.Scalar());
      }
    } else if (v.IsMap()) {
      return LineError(e.line, absl::StrCat(e.key,
                                            ": nested maps are not "
                                            "supported (flat keys "
                                            "only)"));
    }  // null ("key:" with nothing after): an empty list
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<ConfigEntry>> ParseConfigText(absl::string_view text,
                                                         bool yaml) {
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "larger than ", kMaxConfigBytes, " bytes (a config file is small)"));
  }
  auto entries = yaml ? ParseYaml(text) : ParseToml(text);
  if (!entries.ok()) return entries.status();
  // In the file's order (TOML tables iterate by key).
  std::stable_sort(entries->begin(), entries->end(),
                   [](const ConfigEntry& a, const ConfigEntry& b) {
                     return a.line < b.line;
                   });
  return entries;
}

void AddConfigSources(CLI::App& app, const std::string& env_prefix) {
  for (CLI::Option* opt : app.get_options()) {
    const std::string name = LongName(opt);
    if (name.empty() || name == "help" || !opt->get_configurable()) continue;
    if (opt->get_envname().empty()) opt->envname(EnvName(env_prefix, name));
  }
  app.set_config("--config", "",
                 "TOML file (YAML if it ends in .yaml/.yml) whose keys are "
                 "the long flags; flags given here override it");
  app.config_formatter(std::make_shared<FlagConfig>(&app));
  app.allow_config_extras(CLI::config_extras_mode::error);
}

absl::Status ApplyEnvFiles(CLI::App& app, const std::string& env_prefix) {
  for (CLI::Option* opt : app.get_options()) {
    const std::string name = LongName(opt);
    if (name.empty() || name == "help" || opt == app.get_config_ptr()) {
      continue;
    }
    const std::string env = EnvName(env_prefix, name);
    const char* file = std::getenv((env + "_FILE").c_str());
    if (file == nullptr || *file == '\0') continue;
    if (std::getenv(env.c_str()) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("set ", env, " or ", env, "_FILE, not both"));
    }
    if (opt->count() > 0) continue;  // the command line or config won
    auto value = ReadSecret(file);
    if (!value.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(env, "_FILE: ", value.status().message()));
    }
    try {
      opt->add_result(*value);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return absl::InvalidArgumentError(absl::StrCat(env, "_FILE: ", e.what()));
    }
  }
  return absl::OkStatus();
}

}  // namespace simprov
