#include "common/sqn.h"

namespace simprov {

uint64_t MakeSqn(uint64_t seq, uint32_t ind) {
  return ((seq << kIndBits) | (ind & (kIndSlots - 1))) & kSqnMask;
}

uint64_t SeqOf(uint64_t sqn) { return (sqn & kSqnMask) >> kIndBits; }

uint32_t IndOf(uint64_t sqn) {
  return static_cast<uint32_t>(sqn & (kIndSlots - 1));
}

uint64_t NextSqn(HeSqnState& s) {
  s.seq_he += 1;
  const uint64_t sqn = MakeSqn(s.seq_he, s.next_ind);
  s.next_ind = (s.next_ind + 1) % kIndSlots;
  return sqn;
}

void ResyncHe(HeSqnState& s, uint64_t sqn_ms) { s.seq_he = SeqOf(sqn_ms); }

UsimSqnWindow::UsimSqnWindow() { seq_ms_.fill(0); }

UsimSqnWindow::UsimSqnWindow(std::array<uint64_t, kIndSlots> seq_ms)
    : seq_ms_(seq_ms) {}

bool UsimSqnWindow::Accept(uint64_t sqn) {
  const uint64_t seq = SeqOf(sqn);
  const uint32_t ind = IndOf(sqn);
  if (seq <= seq_ms_[ind]) return false;  // replay or out of window (C.2.2)
  uint64_t highest = 0;
  for (uint64_t v : seq_ms_) highest = v > highest ? v : highest;
  if (seq > highest && seq - highest > kDelta) return false;  // C.2.3
  seq_ms_[ind] = seq;
  return true;
}

uint64_t UsimSqnWindow::HighestSqn() const {
  uint32_t best = 0;
  for (uint32_t i = 1; i < kIndSlots; ++i) {
    if (seq_ms_[i] > seq_ms_[best]) best = i;
  }
  if (seq_ms_[best] == 0) return 0;
  return MakeSqn(seq_ms_[best], best);
}

}  // namespace simprov
