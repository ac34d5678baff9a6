// pause_point: where the fault-injection tests hold a rank so that a signal lands in a chosen phase (start-up, a
// checkpoint save, shutdown). Inert unless WEFT_TEST_PAUSE_AT names the phase.
#pragma once

#include <string_view>

namespace weft {

// With WEFT_TEST_PAUSE_AT=<phase> (and WEFT_TEST_PAUSE_RANK=<rank> or unset for every rank), the rank writes
// "$WEFT_TEST_PAUSE_DIR/rank<R>.<phase>" the first time it reaches `phase` and waits until
// "$WEFT_TEST_PAUSE_DIR/go" exists. The phases: "startup" (after MPI_Init, before any communicator), "save" (a
// rank's shard is written, its checkpoint not yet committed), "shutdown" (training done, before MPI_Finalize), "shm"
// (the world group's shared-memory segment made, not yet mapped by the others; on the MPI thread).
void pause_point(std::string_view phase);

}  // namespace weft
