// The NCCL backend: collectives on CUDA device memory over NCCL, bootstrapped (unique id) through another communicator.
#pragma once

#include <memory>

#include "collectives/communicator.h"
#include "runtime/device.h"

namespace weft {

// An NCCL communicator over all ranks of `bootstrap` (usually the MPI world): rank 0 makes the unique id and
// broadcasts it through `bootstrap`, then every rank joins with a non-blocking ncclCommInitRankConfig whose
// setup is polled against options.timeout. Operations run on a communication stream of `device`, after the
// work already queued on its compute stream (an event joins them), so they overlap later compute.
//
// Guarantees differ from the host backends: NCCL reduces bf16/fp16 in their own type at each step (not summed in
// fp32 and rounded once), and its results are run-to-run deterministic only for a fixed NCCL version, rank
// count, topology and algorithm (pin NCCL_ALGO and NCCL_PROTO). There is no count/dtype mismatch check: a
// mismatch hangs in NCCL and is reported as a timeout. Every wait polls cudaEventQuery and
// ncclCommGetAsyncError against its deadline; a timeout or an NCCL error calls ncclCommAbort, and the group
// then fails every later operation. split() uses ncclCommSplit.
std::unique_ptr<Communicator> make_nccl_world(Communicator& bootstrap, Device& device, CommOptions options);

}  // namespace weft
