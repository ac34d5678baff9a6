// The MPI backend's Communicator: nonblocking Open MPI calls on host memory, posted and polled by the MpiEngine thread.
#pragma once

#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/mpi/mpi_engine.h"

namespace weft {

// How the MPI backend computes, and what it guarantees:
// - all_reduce, reduce_scatter and all_gather never use Open MPI's collectives (broadcast only across hosts).
//   When every rank of the communicator is on this host they run through shared memory (shared_memory.h,
//   shared_reduce_phase in mpi_task.h): no messages, each rank copies from the others' staging buffers. Otherwise (or with
//   WEFT_SHM_DISABLE=1) they are point-to-point messages on a duplicate communicator: rank r receives every
//   rank's copy of chunk r in segments, reduces each in rank order as soon as it is complete
//   (collectives/reduce.h) and sends the result to every rank. Both send 2(n-1)/n x size per rank like a ring,
//   and make the result independent of Open MPI's algorithm choice: bit-identical on every rank, from run to
//   run, and equal to the threads backend. reduce_scatter is the first half. bf16/fp16 travel as 16 bits and
//   are summed in fp32 and rounded once. broadcast is shared memory on one host; across hosts it, barrier,
//   send and recv are plain MPI_I* calls.
// - Mismatch check (CommOptions::mismatch_check, on by default): before its data, each collective sends a
//   48-byte CallSignature {op, #N, count, dtype, reduce op, root} to every other rank; every rank sees every
//   signature, so all ranks fail the same collective with the same message and the group stays usable. Cost:
//   one small message each way per peer (a few microseconds on one host). A recv checks the received count
//   with MPI_Get_count instead.
// - Collectives of one communicator run one after another on the MPI thread (MPI requires the same order on
//   every rank); send/recv are posted at once. Counts above 2^31-1 elements per call are rejected.
// - Every wait has a deadline; a timeout names the ranks whose messages had not arrived (Work::waiting_for),
//   and, like an MPI error, leaves the ranks out of step, so the communicator fails every later operation at
//   once. Errors are returned, not fatal (MPI_ERRORS_RETURN).
// Duplicates MPI_COMM_WORLD (MPI_Comm_idup, with the deadline of options.timeout) into the "world" communicator.
std::unique_ptr<Communicator> make_mpi_world(std::shared_ptr<MpiEngine> engine, CommOptions options);

// A group of the MPI world's processes world_ranks[0], world_ranks[1], ... (group rank r is world_ranks[r]), made
// with MPI_Comm_create_group: collective over the members only, so they must have met (through a Store) first.
std::unique_ptr<Communicator> make_mpi_group(std::shared_ptr<MpiEngine> engine, const std::vector<int>& world_ranks,
                                             const std::string& name, CommOptions options);

// The engine and the MPI_Comm (into *raw) behind an MPI communicator, for services built on it (the MPI store);
// nullptr when comm is not an MPI communicator. *raw may be used on the engine's thread only.
std::shared_ptr<MpiEngine> mpi_engine_of(Communicator& comm, MPI_Comm* raw);

// Runs fn(the MPI_Comm behind comm) on the MPI thread, for raw MPI calls such as the bench's baseline; false
// when comm is not an MPI communicator. No operation of comm may be in flight.
bool with_raw_mpi(Communicator& comm, const std::function<void(MPI_Comm)>& fn);

}  // namespace weft
