// The USIM APDU parsers (agent/sim/usim_apdu) on card output: response
// splitting, AUTHENTICATE answers, FCP templates, EF_DIR records, EF_IMSI
// and EF_ICCID, Le rewriting, and the T=0 exchange (61xx / 6Cxx) over a
// card whose answers come from the input.
//
// Input: one selector byte (mod 7), then the bytes. Selector 6 (T=0): the
// card's answers, each a length byte and that many bytes.
#include <cstddef>
#include <cstdint>

#include "agent/sim/usim_apdu.h"

using namespace simprov;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  const Bytes in(data + 1, data + size);
  switch (data[0] % 7) {
    case 0: {
      absl::StatusOr<usim::Response> r = usim::SplitResponse(in);
      if (r.ok()) {
        (void)usim::DescribeSw(r->sw);
        (void)usim::ParseAuthenticateResponse(*r);
      }
      break;
    }
    case 1:
      (void)usim::ParseFcp(in);
      break;
    case 2: {
      absl::StatusOr<Bytes> aid = usim::AidFromDirRecord(in);
      if (aid.ok()) (void)usim::IsUsimAid(*aid);
      break;
    }
    case 3:
      (void)usim::DecodeImsi(in);
      break;
    case 4:
      (void)usim::DecodeIccid(in);
      break;
    case 5:
      (void)usim::WithLe(in, 0x10);
      break;
    case 6: {
      size_t off = 0;
      int calls = 0;
      usim::TransmitFn card = [&](const Bytes&) -> absl::StatusOr<Bytes> {
        if (++calls > 64 || off >= in.size()) {
          return absl::UnavailableError("card gone");
        }
        const size_t n = std::min<size_t>(in[off], in.size() - off - 1);
        Bytes answer(in.begin() + static_cast<long>(off + 1),
                     in.begin() + static_cast<long>(off + 1 + n));
        off += 1 + n;
        return answer;
      };
      absl::StatusOr<Bytes> apdu =
          usim::BuildAuthenticate(Bytes(16, 1), Bytes(16, 2), false);
      absl::StatusOr<usim::Response> r = usim::Transmit(card, *apdu);
      if (r.ok()) (void)usim::ParseAuthenticateResponse(*r);
      break;
    }
  }
  return 0;
}
