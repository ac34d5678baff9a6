// The NCCL backend: collectives on CUDA device memory over NCCL, bootstrapped (unique id) through another communicator.
#pragma once

#include <memory>

#include <string>

#include "collectives/communicator.h"
#include "collectives/store.h"
#include "runtime/device.h"

namespace weft {

// Who joins an NCCL communicator: its rank and size, its name, and the rank's world rank (for messages).
struct NcclRank {
  int rank = 0, size = 1;
  std::string name = "world";
  int world_rank = 0;
};

// An NCCL communicator of `me.size` ranks: rank 0 makes the unique id and sets it in `store` (key
// "nccl/<name>/unique_id"), the others get it from there within options.timeout, then every rank joins with a
// non-blocking ncclCommInitRankConfig whose setup is polled against options.timeout. Any Store works: the
// MPI-backed one under mpirun, a framework's own (torch's TCPStore) when weft is embedded. Operations run on a communication stream of `device`, after the
// work already queued on its compute stream (an event joins them), so they overlap later compute.
//
// Guarantees differ from the host backends: NCCL reduces bf16/fp16 in their own type at each step (not summed in
// fp32 and rounded once), and its results are run-to-run deterministic only for a fixed NCCL version, rank
// count, topology and algorithm (pin NCCL_ALGO and NCCL_PROTO). There is no count/dtype mismatch check: a
// mismatch hangs in NCCL and is reported as a timeout. Every wait polls cudaEventQuery and
// ncclCommGetAsyncError against its deadline; a timeout or an NCCL error calls ncclCommAbort, and the group
// then fails every later operation. split() uses ncclCommSplit.
std::unique_ptr<Communicator> make_nccl_world(Store& store, const NcclRank& me, Device& device, CommOptions options);

// The same for a caller that has no weft Device (the C API): the group lives on CUDA device `ordinal` (< 0: the
// calling thread's current one), on a communication stream of its own, and its operations start after the work
// queued on the legacy default stream until set_nccl_input_stream names another. Error(kUsage) when the process
// sees no CUDA device or not that one.
std::unique_ptr<Communicator> make_nccl_group_on_device(Store& store, const NcclRank& me, int ordinal,
                                                        CommOptions options);

// Later operations of NCCL group `comm` start after the work queued on `cuda_stream` (a cudaStream_t of the group's
// device; nullptr is the legacy default stream) when each is issued. Error(kUsage) for a group of another backend.
void set_nccl_input_stream(Communicator& comm, void* cuda_stream);

}  // namespace weft
