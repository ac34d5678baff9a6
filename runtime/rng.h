// Counter-based random numbers (Philox-4x32-10): the value at (key, index) never depends on who asks or in what order.
#pragma once

#include <cstdint>
#include <string_view>

#include <cmath>

#include "runtime/host_device.h"

namespace weft {

struct Philox4 {
  std::uint32_t v[4];
};

// Philox-4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
WEFT_HD Philox4 philox4x32(std::uint64_t key, std::uint64_t counter_lo, std::uint64_t counter_hi = 0) {
  std::uint32_t c0 = static_cast<std::uint32_t>(counter_lo), c1 = static_cast<std::uint32_t>(counter_lo >> 32);
  std::uint32_t c2 = static_cast<std::uint32_t>(counter_hi), c3 = static_cast<std::uint32_t>(counter_hi >> 32);
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    std::uint64_t p0 = static_cast<std::uint64_t>(0xD2511F53u) * c0;
    std::uint64_t p1 = static_cast<std::uint64_t>(0xCD9E8D57u) * c2;
    std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
    std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<std::uint32_t>(p1);
    c3 = static_cast<std::uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in (0, 1]: never 0, so log() is safe in Box-Muller.
WEFT_HD float uint_to_unit(std::uint32_t bits) { return (static_cast<float>(bits >> 8) + 1.0f) * (1.0f / 16777216.0f); }

WEFT_HD float random_uniform(std::uint64_t key, std::uint64_t index) { return uint_to_unit(philox4x32(key, index).v[0]); }

// Standard normal by Box-Muller on two uniforms from one Philox block.
WEFT_HD float random_normal(std::uint64_t key, std::uint64_t index) {
  Philox4 block = philox4x32(key, index);
  float radius = sqrtf(-2.0f * logf(uint_to_unit(block.v[0])));
  float angle = 6.283185307179586f * uint_to_unit(block.v[1]);
  return radius * cosf(angle);
}

// A stream key for one named purpose ("h.3.mlp.c_fc.weight", "data.order") under one seed.
std::uint64_t rng_key(std::uint64_t seed, std::string_view name);

}  // namespace weft
