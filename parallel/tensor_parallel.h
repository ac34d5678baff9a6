// CommTpGroup: the model's tensor-parallel group (model/tp_group.h) over a Communicator of the tp mesh axis.
#pragma once

#include "collectives/communicator.h"
#include "model/tp_group.h"

namespace weft {

// The parallel layers' paired operations reduce through here: Megatron's f (identity forward, all-reduce
// backward) and g (all-reduce forward, identity backward) are GptModel's column- and row-parallel linears.
class CommTpGroup final : public TpGroup {
 public:
  explicit CommTpGroup(Communicator& tp) : tp_(tp) {}
  int rank() const override { return tp_.rank(); }
  int size() const override { return tp_.size(); }
  void all_reduce_sum(float* data, std::size_t count) override {
    if (tp_.size() > 1) tp_.all_reduce(data, count, DType::kF32, ReduceOp::kSum)->wait();
  }
  void all_reduce_max(float* data, std::size_t count) override {
    if (tp_.size() > 1) tp_.all_reduce(data, count, DType::kF32, ReduceOp::kMax)->wait();
  }
  void reduce_scatter_sum(const float* full, float* chunk, std::size_t chunk_count) override {
    tp_.reduce_scatter(full, chunk, chunk_count, DType::kF32, ReduceOp::kSum)->wait();
  }
  using TpGroup::all_gather;
  void all_gather(const void* chunk, void* full, std::size_t chunk_count, DType type) override {
    tp_.all_gather(chunk, full, chunk_count, type)->wait();
  }

 private:
  Communicator& tp_;
};

}  // namespace weft
