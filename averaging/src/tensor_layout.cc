#include "tensor_layout.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace hivemind::averaging {
namespace {
constexpr size_t kStagingAlignment = 64;
size_t align_up(size_t n) {
  return (n + kStagingAlignment - 1) / kStagingAlignment * kStagingAlignment;
}
}  // namespace

TensorLayout::TensorLayout(std::span<const TensorRef> tensors)
    : tensors_(tensors.begin(), tensors.end()) {
  first_element_.reserve(tensors_.size());
  staging_offset_.reserve(tensors_.size());
  for (const auto& t : tensors_) {
    first_element_.push_back(total_elements_);
    staging_offset_.push_back(staging_bytes_);
    total_elements_ += t.elements;
    staging_bytes_ = align_up(staging_bytes_ + t.bytes());
  }
}

std::vector<LayoutPiece> TensorLayout::pieces(uint64_t offset, uint64_t count) const {
  std::vector<LayoutPiece> out;
  // The last tensor that starts at or before `offset`.
  auto it = std::upper_bound(first_element_.begin(), first_element_.end(), offset);
  size_t t = static_cast<size_t>(it - first_element_.begin()) - 1;
  const uint64_t end = offset + count;
  for (uint64_t at = offset; at < end; ++t) {
    const uint64_t tensor_end = first_element_[t] + tensors_[t].elements;
    if (tensor_end <= at) continue;  // empty tensors are refused earlier; kept safe anyway
    const uint64_t take = std::min(end, tensor_end) - at;
    out.push_back({t, at - first_element_[t], take, tensors_[t].dtype});
    at += take;
  }
  return out;
}

std::vector<PartSegment> TensorLayout::segments_of(std::span<const LayoutPiece> pieces) {
  std::vector<PartSegment> out;
  out.reserve(pieces.size());
  for (const auto& p : pieces)
    out.push_back({p.dtype, p.elements});
  return out;
}

void* TensorLayout::tensor_address(const LayoutPiece& piece) const {
  return static_cast<uint8_t*>(tensors_[piece.tensor].data) +
         piece.begin_in_tensor * quant::dtype_size(piece.dtype);
}

size_t TensorLayout::staging_offset(const LayoutPiece& piece) const {
  return staging_offset_[piece.tensor] + piece.begin_in_tensor * quant::dtype_size(piece.dtype);
}

Status TensorLayout::check_segments(uint64_t offset, std::span<const PartSegment> segments) const {
  uint64_t count = 0;
  for (const auto& s : segments)
    count += s.elements;
  if (offset + count > total_elements_)
    return invalid_argument_error(
        fmt::format("tensors differ: elements [{}, {}) lie beyond this member's {} elements",
                    offset, offset + count, total_elements_));
  const auto mine = pieces(offset, count);
  uint64_t at = offset;
  for (size_t i = 0; i < std::max(mine.size(), segments.size()); ++i) {
    if (i >= mine.size() || i >= segments.size() || mine[i].elements != segments[i].elements)
      return invalid_argument_error(
          fmt::format("tensors differ: a tensor boundary does not match near element {}", at));
    if (mine[i].dtype != segments[i].dtype)
      return invalid_argument_error(fmt::format("tensors differ: element {} is {} there, {} here",
                                                at, quant::dtype_name(segments[i].dtype),
                                                quant::dtype_name(mine[i].dtype)));
    at += mine[i].elements;
  }
  return Status::ok();
}

void TensorLayout::copy_from_staging(const uint8_t* staging, uint64_t offset,
                                     uint64_t count) const {
  if (count == 0) return;
  for (const auto& piece : pieces(offset, count))
    std::memcpy(tensor_address(piece), staging + staging_offset(piece),
                piece.elements * quant::dtype_size(piece.dtype));
}

}  // namespace hivemind::averaging
