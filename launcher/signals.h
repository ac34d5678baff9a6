// Stop requests: SIGTERM (preemption, scancel) and SIGINT (Ctrl-C) ask the training loop to stop after the
// current step and save a checkpoint, instead of killing the process mid-step.
#pragma once

namespace weft {

void install_stop_handlers();
bool stop_requested();

}  // namespace weft
