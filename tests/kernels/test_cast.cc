// bf16 and fp16 conversions: exact round trips, round-to-nearest-even, overflow and the cast kernel.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "kernels/backend.h"
#include "tests/test_util.h"

using namespace weft;

TEST_CASE("every fp16 value survives fp16 -> fp32 -> fp16 unchanged") {
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    const auto half = static_cast<std::uint16_t>(bits);
    const float value = fp16_to_float(half);
    if (std::isnan(value)) continue;
    REQUIRE(float_to_fp16(value) == half);
  }
}

TEST_CASE("fp16 rounds to nearest even, keeps subnormals and overflows to infinity") {
  CHECK(fp16_to_float(float_to_fp16(1.0f)) == 1.0f);
  CHECK(float_to_fp16(1.0f + 1.0f / 2048.0f) == float_to_fp16(1.0f));               // a tie goes to even
  CHECK(float_to_fp16(1.0f + 3.0f / 2048.0f) == float_to_fp16(1.0f + 4.0f / 2048.0f));  // and here up to even
  CHECK(fp16_to_float(float_to_fp16(5.9604645e-8f)) == 5.9604645e-8f);                // smallest subnormal
  CHECK(fp16_to_float(float_to_fp16(65504.0f)) == 65504.0f);
  CHECK(std::isinf(fp16_to_float(float_to_fp16(65520.0f))));
  CHECK(std::isnan(fp16_to_float(float_to_fp16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("bf16 keeps the top 16 bits with round-to-nearest-even") {
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(float_to_bf16(bits_float(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(float_to_bf16(bits_float(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(float_to_bf16(bits_float(0x3f808001u)) == 0x3f81);  // above the tie
  for (std::uint32_t bits = 0; bits < 65536; bits += 7) {
    const float value = bf16_to_float(static_cast<std::uint16_t>(bits));
    if (!std::isnan(value)) CHECK(float_to_bf16(value) == bits);
  }
}

TEST_CASE("the cast kernel converts buffers between all three types") {
  auto values = weft::testing::random_normal_vector(33, 70, 100.0f);
  const auto& k = kernels::kernels_for(DeviceType::kCpu);
  std::vector<std::uint16_t> half(values.size()), brain(values.size());
  std::vector<float> back(values.size());
  k.cast({}, half.data(), DType::kF16, values.data(), DType::kF32, values.size());
  k.cast({}, brain.data(), DType::kBF16, half.data(), DType::kF16, values.size());
  k.cast({}, back.data(), DType::kF32, brain.data(), DType::kBF16, values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    CHECK(half[i] == float_to_fp16(values[i]));
    CHECK(brain[i] == float_to_bf16(fp16_to_float(half[i])));
    CHECK(back[i] == bf16_to_float(brain[i]));
  }
}
