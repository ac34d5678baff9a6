// The Store checks every store runs (memory, file, MPI): one call per rank, ranks as threads or processes.
#pragma once

#include "collectives/store.h"

namespace weft::testing {

// Rank `rank` of `size` plays its part; throws std::runtime_error naming the first thing that went wrong.
void check_store(Store& store, int rank, int size);

}  // namespace weft::testing
