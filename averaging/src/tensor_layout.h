// TensorLayout: a round's tensors seen as one logical sequence of elements, and where each element
// lives in the tensors and in the round's staging memory.
//
// Members must hold the same tensors in the same order (the same model): a chunk's segments are the
// pieces of the tensors it covers, so a sender's segments must equal the owner's own pieces for the
// same range, which check_segments() verifies and explains.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <hivemind/averaging/part_message.h>
#include <hivemind/averaging/tensor_ref.h>
#include <hivemind/common/status.h>

namespace hivemind::averaging {

struct LayoutPiece {
  size_t tensor = 0;
  uint64_t begin_in_tensor = 0;  // elements
  uint64_t elements = 0;
  quant::DType dtype = quant::DType::kFloat32;
};

class TensorLayout {
 public:
  explicit TensorLayout(std::span<const TensorRef> tensors);

  uint64_t total_elements() const { return total_elements_; }
  // Staging holds every tensor's bytes, each tensor starting on a 64-byte boundary (so a piece of
  // any dtype is aligned for its element type).
  size_t staging_bytes() const { return staging_bytes_; }

  // The pieces of the tensors that [offset, offset + count) covers, in order.
  std::vector<LayoutPiece> pieces(uint64_t offset, uint64_t count) const;
  // The segments a part message says for those pieces.
  static std::vector<PartSegment> segments_of(std::span<const LayoutPiece> pieces);

  void* tensor_address(const LayoutPiece& piece) const;
  size_t staging_offset(const LayoutPiece& piece) const;

  // Ok when a member's segments for the chunk at `offset` equal this layout's pieces there; the
  // error names the first difference (dtype or tensor boundary) by element index.
  Status check_segments(uint64_t offset, std::span<const PartSegment> segments) const;

  // Copies the bytes of elements [offset, offset + count) from `staging` into the tensors.
  void copy_from_staging(const uint8_t* staging, uint64_t offset, uint64_t count) const;

 private:
  std::vector<TensorRef> tensors_;
  std::vector<uint64_t> first_element_;  // per tensor, in the whole sequence
  std::vector<size_t> staging_offset_;   // per tensor
  uint64_t total_elements_ = 0;
  size_t staging_bytes_ = 0;
};

}  // namespace hivemind::averaging
