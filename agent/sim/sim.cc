// OpenSim: the --sim spec names how to reach the USIM.
#include "agent/sim/sim.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/sim/at_sim.h"
#include "agent/sim/pcsc_sim.h"
#include "agent/sim/soft_sim.h"

namespace simprov {

absl::StatusOr<std::unique_ptr<SimCard>> OpenSim(absl::string_view spec) {
  absl::string_view rest = spec;
  if (absl::ConsumePrefix(&rest, "soft:") && !rest.empty()) {
    auto sim = SoftSim::Load(std::string(rest));
    if (!sim.ok()) return sim.status();
    return std::unique_ptr<SimCard>(std::move(*sim));
  }
  rest = spec;
  if (absl::ConsumePrefix(&rest, "at:")) {
    auto options = ParseAtSimSpec(rest);
    if (!options.ok()) return options.status();
    return OpenAtSim(*options);
  }
  if (spec == "pcsc") return OpenPcscSim("");
  rest = spec;
  if (absl::ConsumePrefix(&rest, "pcsc:")) return OpenPcscSim(rest);
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported --sim '", spec,
      "' (expected soft:FILE, at:DEVICE[,baud=N][,timeout=SECONDS] or "
      "pcsc[:READER])"));
}

}  // namespace simprov
