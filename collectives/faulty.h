// FaultyCommunicator: a decorator that injects one fault (skip, hang, throw, corrupt count) into another communicator.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "collectives/communicator.h"

namespace weft {

enum class FaultKind {
  kNone,
  kSkip,          // never issue the operation: the other ranks wait for it until their deadline
  kHang,          // issue it, but this rank's Work never reports completion: its own wait times out
  kThrow,         // do not issue it; this rank's Work fails at once with an injected Error(kPeer)
  kCorruptCount,  // issue it with one element fewer (memory-safe): the others see a count mismatch
};

struct FaultSpec {
  FaultKind kind = FaultKind::kNone;
  int rank = -1;              // group rank the fault hits; -1 for every rank
  std::uint64_t seq = 1;      // the #N it hits (collectives and send/recv are numbered separately)
  std::optional<OpKind> op;   // only operations of this kind; any kind when empty
};

// Wraps `inner` (same rank, size, name and options); every operation but the one the spec names is forwarded
// unchanged. split() forwards too and returns the inner backend's sub-communicator, without faults.
std::unique_ptr<Communicator> make_faulty(std::unique_ptr<Communicator> inner, FaultSpec spec);

}  // namespace weft
