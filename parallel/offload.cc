#include "parallel/offload.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "parallel/zero.h"
#include "runtime/error.h"

namespace weft {
namespace {

std::int64_t round_up(std::int64_t n, std::int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

std::vector<std::int64_t> range_sizes(const std::vector<OptimizerOffload::Target>& targets) {
  std::vector<std::int64_t> sizes;
  for (const auto& target : targets) sizes.push_back(target.range.size());
  return sizes;
}

}  // namespace

// Page-aligned host memory (pinned through the device where the device copies to or from it), charged to the
// host's accounting.
class OptimizerOffload::HostBuffer {
 public:
  enum class Pinned { kNo, kYes };
  HostBuffer() = default;
  HostBuffer(Device& device, MemoryAccounting& accounting, std::size_t bytes, MemoryCategory category, Pinned pinned)
      : device_(&device), accounting_(&accounting), bytes_(bytes), category_(category), pinned_(pinned) {
    bytes = static_cast<std::size_t>(round_up(static_cast<std::int64_t>(std::max<std::size_t>(bytes, 1)),
                                              OffloadFile::kAlignment));
    data_ = pinned == Pinned::kYes ? device.allocate_pinned(bytes) : std::aligned_alloc(OffloadFile::kAlignment, bytes);
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(data_, 0, bytes);
    accounting.on_allocate(category, bytes_);
  }
  ~HostBuffer() { reset(); }
  HostBuffer(HostBuffer&& other) noexcept { *this = std::move(other); }
  HostBuffer& operator=(HostBuffer&& other) noexcept {
    reset();
    std::swap(device_, other.device_);
    std::swap(accounting_, other.accounting_);
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    std::swap(category_, other.category_);
    std::swap(pinned_, other.pinned_);
    return *this;
  }

  void* data() const { return data_; }
  float* f32() const { return static_cast<float*>(data_); }
  char* bytes() const { return static_cast<char*>(data_); }

 private:
  void reset() {
    if (data_ == nullptr) return;
    if (pinned_ == Pinned::kYes) device_->deallocate_pinned(data_);
    else std::free(data_);
    accounting_->on_free(category_, bytes_);
    data_ = nullptr;
  }
  Device* device_ = nullptr;
  MemoryAccounting* accounting_ = nullptr;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  MemoryCategory category_ = MemoryCategory::kOther;
  Pinned pinned_ = Pinned::kNo;
};

// Host buffers one tile at a time is stepped in.
struct OptimizerOffload::Slot {
  HostBuffer region;  // disk: a tile's region, as in the file
  HostBuffer out;     // 16-bit parameters: the rounded values copied to the device
  std::future<void> io;  // disk: the last transfer into or out of `region`
  std::unique_ptr<Event> copied;  // the device copy from this slot
};

// Host: a bucket's state between steps.
struct OptimizerOffload::Resident {
  HostBuffer master, m, v, grads;
};

// Disk: one tile's gradients between the device and the file.
struct OptimizerOffload::Staging {
  HostBuffer buffer;
  std::future<void> io;
};

OptimizerOffload::OptimizerOffload(const Config& config, const ParamLayout& params, const InitialValues& initial,
                                   std::vector<Target> targets, DType type, Device& device, int rank, Tracer* tracer)
    : targets_(std::move(targets)),
      type_(type),
      device_(device),
      tracer_(tracer),
      host_(make_cpu_device()),
      layout_(offload_layout(config.parallel.offload, type, range_sizes(targets_))),
      to_host_(device.create_stream()),
      to_device_(device.create_stream()),
      computed_(device.create_event()),
      ready_(targets_.size(), 1) {
  const bool disk = config.parallel.offload == Offload::kDisk;
  MemoryAccounting& memory = host_->memory();
  using Pinned = HostBuffer::Pinned;
  const Pinned weights_pinned = type == DType::kF32 ? Pinned::kYes : Pinned::kNo;  // fp32: copied to the device
  for (std::size_t b = 0; b < targets_.size(); ++b) {
    const ParamRange range = targets_[b].range;
    adams_.emplace_back(params, config.train, *host_, range.begin, range.end, -1, AdamMoments::kCallers);
    landed_.push_back(device.create_event());
    updated_.push_back(device.create_event());
    if (!disk) {
      const auto n = static_cast<std::size_t>(range.size());
      resident_.push_back({HostBuffer(device, memory, 4 * n, MemoryCategory::kOptimizer, weights_pinned),
                           HostBuffer(device, memory, 4 * n, MemoryCategory::kOptimizer, Pinned::kNo),
                           HostBuffer(device, memory, 4 * n, MemoryCategory::kOptimizer, Pinned::kNo),
                           HostBuffer(device, memory, n * param_bytes(), MemoryCategory::kGrads, Pinned::kYes)});
      params.initialise_range(initial, range, resident_.back().master.f32());
    }
  }
  // The last bucket first: the next forward starts with the embeddings (buckets are in backward order).
  for (auto b = targets_.size(); b-- > 0;)
    for (std::size_t t : layout_.tiles_of[b]) order_.push_back(t);

  const auto slot_elements = static_cast<std::size_t>(layout_.slot_elements);  // no tile is larger
  slots_.resize(disk ? OffloadLayout::kDiskSlots : OffloadLayout::kHostSlots);
  for (Slot& slot : slots_) {
    if (disk)
      slot.region = HostBuffer(device, memory, slot_elements * (12 + param_bytes()), MemoryCategory::kOptimizer,
                               Pinned::kYes);
    if (type != DType::kF32)
      slot.out = HostBuffer(device, memory, slot_elements * param_bytes(), MemoryCategory::kParams, Pinned::kYes);
    slot.copied = device.create_event();
  }
  if (type != DType::kF32)
    widened_ = std::make_unique<HostBuffer>(device, memory, slot_elements * 4, MemoryCategory::kOther, Pinned::kNo);
  if (disk) {
    staging_.resize(OffloadLayout::kGradientStaging);
    for (Staging& s : staging_)
      s.buffer = HostBuffer(device, memory, slot_elements * param_bytes(), MemoryCategory::kGrads, Pinned::kYes);
  }
  // The planner reports offload_layout()'s figures: they must be what is allocated here.
  const MemorySnapshot allocated = memory.snapshot();
  for (std::size_t c = 0; c < kMemoryCategoryCount; ++c)
    WEFT_CHECK(allocated.live[c] == layout_.host[c], "offload host memory ({}): allocated {} bytes, laid out {}",
               memory_category_name(static_cast<MemoryCategory>(c)), allocated.live[c], layout_.host[c]);
  if (!disk) return;

  file_ = std::make_unique<OffloadFile>(config, layout_.file_bytes, rank);
  // Two I/O threads: a read ahead and a write back proceed at once (the file is opened for direct I/O, so each
  // request goes to the device as it is).
  io_ = std::make_unique<TaskQueue>(2);
  // The initial state, tile by tile: master weights from the same source as the parameters, zero moments.
  Slot& slot = slots_.front();
  for (const Tile& t : layout_.tiles) {
    std::memset(slot.region.data(), 0, static_cast<std::size_t>(t.state_bytes()));
    const ParamRange range = targets_[t.bucket].range;
    params.initialise_range(initial, {range.begin + t.first, range.begin + t.first + t.count},
                            slot.region.f32());
    write_state(t, slot);
  }
}

OptimizerOffload::~OptimizerOffload() {
  try {
    wait_all();
    gradients_landed();
  } catch (...) {
    // Ending anyway: the error was (or will be) reported by whoever waited for it.
  }
}

OptimizerOffload::Views OptimizerOffload::views(const Tile& t, Slot& slot) {
  if (file_) {
    char* region = slot.region.bytes();
    const std::int64_t part = 4 * t.padded;
    return {reinterpret_cast<float*>(region), reinterpret_cast<float*>(region + part),
            reinterpret_cast<float*>(region + 2 * part), region + 3 * part};
  }
  Resident& r = resident_[t.bucket];
  return {r.master.f32() + t.first, r.m.f32() + t.first, r.v.f32() + t.first,
          r.grads.bytes() + t.first * static_cast<std::int64_t>(param_bytes())};
}

void OptimizerOffload::settle(Slot& slot) {
  if (slot.io.valid()) slot.io.get();
  slot.copied->synchronize();
}

void OptimizerOffload::write_state(const Tile& t, Slot& slot) {
  file_->write(t.offset, slot.region.data(), static_cast<std::size_t>(t.state_bytes()));
}

void OptimizerOffload::gradients_ready(std::size_t b, Tensor gradients, std::int64_t offset) {
  wait_for(b);  // the update of the previous step is done reading this bucket's gradients
  // The copies run on their own stream, after the work that produced the gradients.
  computed_->record(device_.compute_stream());
  computed_->make_wait(*to_host_);
  const std::size_t width = param_bytes();
  if (!file_) {
    device_.copy_to_host_async(resident_[b].grads.data(), gradients.at(offset),
                               static_cast<std::size_t>(targets_[b].range.size()) * width, *to_host_);
    landed_[b]->record(*to_host_);
  } else {
    for (std::size_t index : layout_.tiles_of[b]) {
      const Tile& t = layout_.tiles[index];
      Staging& s = staging_[next_staging_++ % staging_.size()];
      if (s.io.valid()) s.io.get();  // its previous tile is in the file
      device_.copy_to_host_async(s.buffer.data(), gradients.at(offset + t.first),
                                 static_cast<std::size_t>(t.count) * width, *to_host_);
      landed_[b]->record(*to_host_);
      s.io = io_->submit([this, t, &s, event = landed_[b].get(), width] {
        event->synchronize();
        file_->write(t.offset + t.state_bytes(), s.buffer.data(), static_cast<std::size_t>(t.padded) * width);
      });
    }
  }
  // The previous bucket's copies had a bucket's backward to run in: they are done, and its device buffer can go. So
  // of the buckets handed over, the device holds at most two at once (the planner counts on it).
  copying_.emplace_back(b, std::move(gradients));
  while (copying_.size() > 1) {
    landed_[copying_.front().first]->synchronize();
    copying_.pop_front();
  }
}

void OptimizerOffload::gradients_landed() {
  for (; !copying_.empty(); copying_.pop_front()) landed_[copying_.front().first]->synchronize();
  for (Staging& s : staging_)
    if (s.io.valid()) s.io.get();
}

void OptimizerOffload::start_update(int step, float lr, float grad_scale) {
  wait_all();
  gradients_landed();
  // The copies of new parameters wait for the work still reading the old ones.
  computed_->record(device_.compute_stream());
  computed_->make_wait(*to_device_);
  {
    std::lock_guard lock(mutex_);
    for (std::size_t b = 0; b < ready_.size(); ++b) ready_[b] = layout_.tiles_of[b].empty();
    running_ = true;
  }
  update_ = worker_.submit([this, step, lr, grad_scale] {
    struct Finished {  // whether the update ends or throws, waiters are released
      OptimizerOffload* self;
      ~Finished() {
        std::lock_guard lock(self->mutex_);
        self->running_ = false;
        self->progress_.notify_all();
      }
    } finished{this};
    run_update(step, lr, grad_scale);
  });
}

void OptimizerOffload::run_update(int step, float lr, float grad_scale) {
  TraceScope scope(tracer_, "offloaded update", "host");
  const std::size_t width = param_bytes();
  auto read_ahead = [&](std::size_t i) {
    Slot& slot = slots_[i % slots_.size()];
    settle(slot);
    const Tile& t = layout_.tiles[order_[i]];
    slot.io = io_->submit([this, &t, &slot] {
      file_->read(t.offset, slot.region.data(), static_cast<std::size_t>(t.state_bytes() + t.padded * param_bytes()));
    });
  };
  if (file_ && !order_.empty()) read_ahead(0);
  for (std::size_t i = 0; i < order_.size(); ++i) {
    const Tile& t = layout_.tiles[order_[i]];
    Slot& slot = slots_[i % slots_.size()];
    if (file_) {
      if (i + 1 < order_.size()) read_ahead(i + 1);
      slot.io.get();  // this tile's region is read
    } else {
      settle(slot);  // its out buffer's previous copy is done
    }
    const Views v = views(t, slot);
    // fp32 parameters are the master weights themselves; 16-bit ones are rounded from them into the slot.
    void* updated = type_ == DType::kF32 ? static_cast<void*>(v.weights) : slot.out.data();
    const AdamState state{type_ == DType::kF32 ? nullptr : v.weights, v.m, v.v};
    adamw_update(*host_, adams_[t.bucket], t.first, t.count, state, updated, type_, v.grads, type_, step, lr,
                 grad_scale, widened_ ? widened_->f32() : nullptr);
    device_.copy_from_host_async(static_cast<char*>(targets_[t.bucket].device_params) + t.first * width, updated,
                                 static_cast<std::size_t>(t.count) * width, *to_device_);
    slot.copied->record(*to_device_);
    if (file_) slot.io = io_->submit([this, &t, &slot] { write_state(t, slot); });
    if (&t == &layout_.tiles[layout_.tiles_of[t.bucket].back()]) {  // the bucket's last tile
      updated_[t.bucket]->record(*to_device_);
      std::lock_guard lock(mutex_);
      ready_[t.bucket] = 1;
      progress_.notify_all();
    }
  }
  for (Slot& slot : slots_) settle(slot);
}

void OptimizerOffload::wait_for(std::size_t b) {
  std::unique_lock lock(mutex_);
  progress_.wait(lock, [&] { return ready_[b] || !running_; });
  const bool ready = ready_[b];
  lock.unlock();
  if (!ready) wait_all();  // the update stopped before this bucket: its error
  updated_[b]->synchronize();
}

void OptimizerOffload::wait_all() {
  if (update_.valid()) update_.get();
}

void OptimizerOffload::move_state(std::size_t b, std::array<std::vector<float>, 3>& values, Direction direction) {
  wait_all();
  auto move = [&](float* home, std::size_t part, std::int64_t first, std::int64_t count) {
    float* value = values[part].data() + first;
    const auto bytes = static_cast<std::size_t>(count) * sizeof(float);
    if (direction == Direction::kToHome) std::memcpy(home, value, bytes);
    else std::memcpy(value, home, bytes);
  };
  for (std::size_t index : layout_.tiles_of[b]) {
    const Tile& t = layout_.tiles[index];
    Slot& slot = slots_.front();
    if (file_) {
      settle(slot);
      if (direction == Direction::kFromHome)
        file_->read(t.offset, slot.region.data(), static_cast<std::size_t>(t.state_bytes()));
    }
    const Views v = views(t, slot);
    move(v.weights, 0, t.first, t.count);
    move(v.m, 1, t.first, t.count);
    move(v.v, 2, t.first, t.count);
    if (file_ && direction == Direction::kToHome) write_state(t, slot);
  }
}

std::array<std::vector<float>, 3> OptimizerOffload::state(std::size_t b) {
  std::array<std::vector<float>, 3> values;
  for (auto& part : values) part.resize(static_cast<std::size_t>(targets_[b].range.size()));
  move_state(b, values, Direction::kFromHome);
  return values;
}

void OptimizerOffload::set_state(std::size_t b, const std::array<std::vector<float>, 3>& values) {
  auto copy = values;
  move_state(b, copy, Direction::kToHome);
}

}  // namespace weft
