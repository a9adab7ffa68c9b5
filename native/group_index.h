// Groups by integer id (SPEC §4.1): group_of[i] for every row, groups numbered in order of first appearance
// (open addressing on the ids, O(rows) expected; no sort). Header-only so that the CUDA addon groups on the host
// without linking the CPU kernels and their thread pool. The same hashing as lib/js/advantages.ts groupIndex.
#pragma once

#include <vector>

#include "common.h"

namespace ae {

inline uint32_t hash_group_id(uint32_t lo, uint32_t hi) {
  uint32_t h = (lo ^ (hi * 0x27d4eb2fu)) * 0x9e3779b1u;
  return h ^ (h >> 16);
}

// ids32, ids64 or contiguous groups of group_size rows (none of the three: every row in group 0, no groups);
// returns the group count.
inline index_t group_index(const int32_t* ids32, const int64_t* ids64, index_t group_size, index_t rows, int32_t* group_of) {
  if (ids32 == nullptr && ids64 == nullptr) {
    for (index_t i = 0; i < rows; ++i) group_of[i] = group_size > 0 ? static_cast<int32_t>(i / group_size) : 0;
    return group_size > 0 ? rows / group_size : 0;
  }
  index_t capacity = 16;
  while (capacity < 2 * rows) capacity *= 2;
  const index_t mask = capacity - 1;
  std::vector<int32_t> table(static_cast<size_t>(capacity), -1);
  std::vector<index_t> first_row;
  first_row.reserve(64);
  auto id = [&](index_t i) -> int64_t { return ids64 != nullptr ? ids64[i] : ids32[i]; };
  for (index_t i = 0; i < rows; ++i) {
    const int64_t key = id(i);
    const uint64_t bits = static_cast<uint64_t>(key);
    index_t slot = hash_group_id(static_cast<uint32_t>(bits), ids64 != nullptr ? static_cast<uint32_t>(bits >> 32) : 0) & mask;
    for (;;) {
      const int32_t g = table[slot];
      if (g < 0) {
        table[slot] = static_cast<int32_t>(first_row.size());
        group_of[i] = table[slot];
        first_row.push_back(i);
        break;
      }
      if (id(first_row[g]) == key) {
        group_of[i] = g;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  return static_cast<index_t>(first_row.size());
}

}  // namespace ae
