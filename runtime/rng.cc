#include "runtime/rng.h"

namespace weft {

std::uint64_t rng_key(std::uint64_t seed, std::string_view name) {
  // FNV-1a over the name, then a splitmix64 finalizer folding in the seed so nearby seeds differ everywhere.
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : name) hash = (hash ^ c) * 0x100000001b3ull;
  std::uint64_t z = hash ^ (seed + 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace weft
