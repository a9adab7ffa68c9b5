// Phase entropy (SPEC §5.5, PEAR): per row, the mean entropy of the thinking phase (valid tokens before the
// boundary) and of the answer phase (valid tokens after it). The boundary is a given position per row, or the
// first valid position whose token id equals `boundary_token`; the boundary token itself is in neither phase.
// A row without a boundary (−1) is all thinking.
//
// Contract: entropy f32 or f64 [rows, tokens], mask 0/1 bytes (optional), tokens / positions int32. Sums in
// f64 in token order (bitwise independent of the thread count, equal to lib/js/phase_entropy.ts); an empty
// phase has mean 0. A row with a non-finite entropy at a valid position gets NaN means and the smallest such
// row is returned (−1 when none).
#pragma once

#include "common.h"

namespace ae {

struct PhaseEntropyArgs {
  const void* entropy = nullptr;  // [rows, tokens]
  bool entropy_f64 = false;
  const uint8_t* mask = nullptr;  // optional [rows, tokens]
  index_t rows = 0, tokens = 0;
  bool by_position = true;             // boundary positions given, else search token_ids for boundary_token
  const int32_t* boundary = nullptr;   // [rows] positions in [−1, tokens) when by_position
  const int32_t* token_ids = nullptr;  // [rows, tokens] when !by_position
  int32_t boundary_token = -1;
  // Outputs, [rows] each.
  int32_t* boundary_out = nullptr;  // the position used, −1 when none
  double* think_mean = nullptr;
  double* answer_mean = nullptr;
  int32_t* think_count = nullptr;
  int32_t* answer_count = nullptr;
};
index_t phase_entropy(const PhaseEntropyArgs& args);

}  // namespace ae
