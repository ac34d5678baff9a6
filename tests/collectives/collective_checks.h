// Checks of every collective that run on one rank of any backend (threads tests and the mpirun test share them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collectives/communicator.h"

namespace weft::testing {

// Rank r's input element i: an integer in [-100, 100] from a fixed hash, so sums over ranks are exact in fp32.
float input_value(int rank, std::size_t i, std::uint64_t salt = 0);

// Each check issues the same operations on every rank of `comm`, compares this rank's results with answers
// computed here independently (in double, or by rounding the exact fp32 sum once for 16-bit types), and
// throws std::runtime_error naming the element and both values on the first difference.
void check_all_reduce_sum(Communicator& comm);        // 1001 fp32 elements (not divisible by 2, 3 or 4), and 1
void check_all_reduce_max(Communicator& comm);        // the overflow-flag use: max over ranks
void check_all_reduce_16bit(Communicator& comm);      // bf16 and fp16: summed in fp32, rounded once
void check_reduce_scatter(Communicator& comm);        // chunk 37, out of place and in place
void check_segmented_reductions(Communicator& comm);  // buffers the MPI backend splits into several segments
void check_all_gather(Communicator& comm);            // chunk 37, out of place and in place
void check_broadcast(Communicator& comm);             // root = last rank, 1001 elements
void check_send_recv_ring(Communicator& comm);        // each rank to the next, both directions posted first
void check_barrier_and_async(Communicator& comm);     // several operations in flight, waited out of order
void check_split(Communicator& comm);                 // 2 x 2 on 4 ranks (tp-like and dp-like), parity otherwise
void check_byte_counters(Communicator& comm);         // bytes_sent() equals the nccl-tests formulas
void check_count_mismatch(Communicator& comm);        // rank 0 passes one element more: every rank gets kPeer
void check_dtype_mismatch(Communicator& comm);        // rank 0 passes bf16, the others fp32

struct NamedCheck {
  const char* name;
  void (*run)(Communicator&);
};
// Every check above, in a fixed order.
const std::vector<NamedCheck>& all_checks();

}  // namespace weft::testing
