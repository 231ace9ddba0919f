// Where simprov-broker's settings come from besides the command line
// (docs/broker.md "Configuration"):
//
//  - `--config FILE`: a TOML file (`key = value`, parsed by toml++) or, when
//    FILE ends in .yaml/.yml, a flat YAML map (`key: value`, parsed by
//    yaml-cpp); sections and nested maps are refused. Keys are the long flags
//    without "--" (`data-dir`, `listen`, ...; `_` may stand for `-`),
//    derived from the CLI11 option list, so a flag added later is a key at
//    once. A list flag takes an array. An unknown key is an error naming it.
//    A key `NAME-file` (when no flag has that name) reads flag NAME's
//    value from that file: secrets need not sit in the config itself.
//  - environment variables: SIMPROV_NAME for every flag (NAME upper-case,
//    `-` -> `_`), and SIMPROV_NAME_FILE naming a file that holds the value
//    (for secrets, e.g. a container secret).
//
// Precedence: command line, then the config file, then SIMPROV_NAME, then
// SIMPROV_NAME_FILE.
#ifndef SIMPROV_BROKER_CONFIG_FILE_H_
#define SIMPROV_BROKER_CONFIG_FILE_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace simprov {

// One key of a config file and its values (one, or an array's).
struct ConfigEntry {
  std::string key;
  std::vector<std::string> values;
  int line = 0;
};

// Parses a config file's text into flat keys (in file order) with their
// values: scalars as text, arrays as lists. InvalidArgument names the line.
// Does not know the flags.
absl::StatusOr<std::vector<ConfigEntry>> ParseConfigText(absl::string_view text,
                                                         bool yaml);

// Adds --config and the environment variables to every option of `app`.
// Call after every option is added, before parsing.
void AddConfigSources(CLI::App& app, const std::string& env_prefix);

// After parsing: fills options still unset from ENV_PREFIX_NAME_FILE.
absl::Status ApplyEnvFiles(CLI::App& app, const std::string& env_prefix);

}  // namespace simprov

#endif  // SIMPROV_BROKER_CONFIG_FILE_H_
