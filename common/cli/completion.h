// Shell completion for every simprov binary: `NAME completion bash|zsh`
// prints a script generated from the binary's own CLI11 definition, so the
// completion never drifts from the flags. Bash gets a complete -F function;
// zsh the same through bashcompinit.
#ifndef SIMPROV_COMMON_CLI_COMPLETION_H_
#define SIMPROV_COMMON_CLI_COMPLETION_H_

#include <CLI/CLI.hpp>
#include <string>

namespace simprov {

// The completion script for `app` (the binary is called `name`), or ""
// for a shell other than "bash" or "zsh".
std::string CompletionScript(CLI::App& app, const std::string& name,
                             const std::string& shell);

// Adds the `completion SHELL` subcommand to `app`. Call HandleCompletion
// before app.parse, and after it if the subcommand was parsed elsewhere.
CLI::App* AddCompletionCommand(CLI::App& app, std::string* shell);

// When argv is exactly `NAME completion bash|zsh`, prints the script and
// returns true (the caller exits 0): no other flag or check applies.
bool HandleCompletion(CLI::App& app, const std::string& name, int argc,
                      char** argv);

}  // namespace simprov

#endif  // SIMPROV_COMMON_CLI_COMPLETION_H_
