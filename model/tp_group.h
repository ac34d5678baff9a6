// TpGroup: the tensor-parallel group as the model's parallel layers see it: rank, size and the in-place
// reductions they need. parallel/ implements it over a Communicator; model/ stays free of collectives.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "runtime/dtype.h"

namespace weft {

class TpGroup {
 public:
  virtual ~TpGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Blocking, in place, over every rank of the group; results are bit-identical on every rank.
  virtual void all_reduce_sum(float* data, std::size_t count) = 0;
  virtual void all_reduce_max(float* data, std::size_t count) = 0;
  // Sequence parallelism: rank r receives rows chunk r of the sum (`full` holds size() chunks), and the
  // reverse, every rank's chunk gathered in rank order.
  virtual void reduce_scatter_sum(const float* full, float* chunk, std::size_t chunk_count) = 0;
  virtual void all_gather(const void* chunk, void* full, std::size_t chunk_count, DType type) = 0;
  void all_gather(const float* chunk, float* full, std::size_t chunk_count) {
    all_gather(chunk, full, chunk_count, DType::kF32);
  }
};

// One rank: nothing to communicate.
class SoloTpGroup final : public TpGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(float*, std::size_t) override {}
  void all_reduce_max(float*, std::size_t) override {}
  void reduce_scatter_sum(const float* full, float* chunk, std::size_t count) override {
    std::copy(full, full + count, chunk);
  }
  using TpGroup::all_gather;
  void all_gather(const void* chunk, void* full, std::size_t count, DType type) override {
    std::memcpy(full, chunk, count * dtype_size(type));
  }
};

}  // namespace weft
