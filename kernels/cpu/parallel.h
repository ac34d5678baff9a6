// Parallel loops for the CPU kernels, on the rank's compute threads: the OpenMP pool oneDNN runs on too, so
// weft's kernels and its GEMMs never hold more threads than train.threads between them.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "runtime/threads.h"

namespace weft::kernels::cpu {

// Gives the calling thread the rank's compute thread count. OpenMP keeps the count per calling thread, so a
// thread that never set it would use OMP_NUM_THREADS or every core.
inline void bind_compute_threads() {
  const int wanted = compute_threads();
  if (wanted > 0 && omp_get_max_threads() != wanted) omp_set_num_threads(wanted);
}

// How many ranges parallel_for(n, grain, ...) splits [0, n) into: 1 means the caller's thread runs it whole.
inline std::int64_t parallel_ranges(std::int64_t n, std::int64_t grain) {
  if (n <= 0 || omp_in_parallel()) return 1;
  bind_compute_threads();
  return std::max<std::int64_t>(
      1, std::min<std::int64_t>(omp_get_max_threads(), (n + grain - 1) / std::max<std::int64_t>(grain, 1)));
}

// body(begin, end) over [0, n), split into at most one contiguous range per compute thread, each at least
// `grain` items (a fork costs a few microseconds). Every item is computed whole by one thread, so results do
// not depend on the thread count.
template <typename Body>
void parallel_for(std::int64_t n, std::int64_t grain, const Body& body) {
  if (n <= 0) return;
  const std::int64_t ranges = parallel_ranges(n, grain);
  if (ranges <= 1) {
    body(std::int64_t{0}, n);
    return;
  }
#pragma omp parallel for num_threads(static_cast<int>(ranges)) schedule(static)
  for (std::int64_t r = 0; r < ranges; ++r) body(n * r / ranges, n * (r + 1) / ranges);
}

}  // namespace weft::kernels::cpu
