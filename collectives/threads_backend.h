// The threads backend: N ranks as N threads of one process meeting at a shared rendezvous (exact, for tests).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"

namespace weft {

// n communicators of one group, element r for the thread that plays rank r. Buffers are host memory. The rank
// that arrives last at a collective moves the data for all ranks (reductions in rank order, so every rank gets
// bit-identical results, equal to the MPI backend's); every rank's call returns at once with a Work.
std::vector<std::unique_ptr<Communicator>> make_thread_group(int n, CommOptions options = {},
                                                             const std::string& name = "world");

// Runs fn(*comms[r]) on one thread per rank, joins them all, then rethrows the exception of the lowest rank
// that threw (if any).
void run_on_threads(const std::vector<std::unique_ptr<Communicator>>& comms,
                    const std::function<void(Communicator&)>& fn);

}  // namespace weft
