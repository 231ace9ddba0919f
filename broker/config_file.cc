#include "broker/config_file.h"

#include <cstdlib>
#include <iterator>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"

namespace simprov {
namespace {

constexpr size_t kMaxSecretFileBytes = 64 * 1024;

// Strips a comment that starts outside quotes.
absl::string_view StripComment(absl::string_view line) {
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote != 0) {
      if (c == '\\' && quote == '"') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#') {
      return line.substr(0, i);
    }
  }
  return line;
}

absl::StatusOr<std::string> Scalar(absl::string_view v, int line) {
  v = absl::StripAsciiWhitespace(v);
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
  };
  if (v.empty()) return bad("missing value");
  if (v.front() == '\'') {
    if (v.size() < 2 || v.back() != '\'') return bad("unterminated string");
    return std::string(v.substr(1, v.size() - 2));
  }
  if (v.front() == '"') {
    if (v.size() < 2 || v.back() != '"') return bad("unterminated string");
    std::string out;
    for (size_t i = 1; i + 1 < v.size(); ++i) {
      char c = v[i];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i + 2 >= v.size()) return bad("bad escape");
      switch (v[++i]) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        default:
          return bad("unsupported escape");
      }
    }
    return out;
  }
  return std::string(v);
}

// "[a, "b", 3]" -> items; commas inside quotes are kept.
absl::StatusOr<std::vector<std::string>> Array(absl::string_view v, int line) {
  v = absl::StripAsciiWhitespace(v);
  v = v.substr(1, v.size() - 2);  // caller checked the brackets
  std::vector<std::string> items;
  std::string cur;
  char quote = 0;
  auto flush = [&]() -> absl::Status {
    if (absl::StripAsciiWhitespace(cur).empty()) {
      cur.clear();
      return absl::OkStatus();
    }
    auto s = Scalar(cur, line);
    if (!s.ok()) return s.status();
    items.push_back(*s);
    cur.clear();
    return absl::OkStatus();
  };
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (quote != 0) {
      if (c == '\\' && quote == '"' && i + 1 < v.size()) {
        cur += c;
        cur += v[++i];
        continue;
      }
      if (c == quote) quote = 0;
      cur += c;
    } else if (c == '"' || c == '\'') {
      quote = c;
      cur += c;
    } else if (c == ',') {
      if (absl::Status s = flush(); !s.ok()) return s;
    } else {
      cur += c;
    }
  }
  if (absl::Status s = flush(); !s.ok()) return s;
  return items;
}

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

absl::StatusOr<std::vector<ConfigEntry>> ParseConfigText(absl::string_view text,
                                                         bool yaml) {
  std::vector<ConfigEntry> out;
  int line_no = 0;
  ConfigEntry* open_list = nullptr;  // YAML "key:" followed by "- item"
  std::string pending;               // TOML multi-line array
  int pending_line = 0;
  std::string pending_key;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line_no;
    absl::string_view line = StripComment(raw);
    if (!pending.empty()) {
      pending += std::string(line);
      if (absl::StrContains(line, ']')) {
        auto items = Array(absl::StripAsciiWhitespace(pending), pending_line);
        if (!items.ok()) return items.status();
        out.push_back({pending_key, *std::move(items), pending_line});
        pending.clear();
      }
      continue;
    }
    absl::string_view s = absl::StripAsciiWhitespace(line);
    if (s.empty() || s == "---") continue;
    if (yaml && absl::StartsWith(s, "- ")) {
      if (open_list == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_no, ": list item without a key"));
      }
      auto v = Scalar(s.substr(2), line_no);
      if (!v.ok()) return v.status();
      open_list->values.push_back(*std::move(v));
      continue;
    }
    open_list = nullptr;
    if (!yaml && s.front() == '[') {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_no, ": sections are not supported (flat keys only)"));
    }
    const size_t sep = s.find(yaml ? ':' : '=');
    if (sep == absl::string_view::npos || sep == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_no, ": expected key ", yaml ? ": value" : "= value"));
    }
    std::string key(absl::StripAsciiWhitespace(s.substr(0, sep)));
    if (key.size() >= 2 && (key.front() == '"' || key.front() == '\'')) {
      key = key.substr(1, key.size() - 2);
    }
    absl::string_view value = absl::StripAsciiWhitespace(s.substr(sep + 1));
    if (yaml && value.empty()) {
      out.push_back({key, {}, line_no});
      open_list = &out.back();
      continue;
    }
    if (!value.empty() && value.front() == '[') {
      if (value.back() != ']') {
        if (yaml) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line_no, ": unterminated list"));
        }
        pending = std::string(value);
        pending_line = line_no;
        pending_key = key;
        continue;
      }
      auto items = Array(value, line_no);
      if (!items.ok()) return items.status();
      out.push_back({key, *std::move(items), line_no});
      continue;
    }
    auto v = Scalar(value, line_no);
    if (!v.ok()) return v.status();
    out.push_back({key, {*std::move(v)}, line_no});
  }
  if (!pending.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", pending_line, ": unterminated array"));
  }
  return out;
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
