#include "byte_reader.h"

namespace hivemind::protocol {

Result<std::string> ByteReader::string16(size_t max_bytes, std::string_view what) {
  HIVEMIND_ASSIGN_OR_RETURN(uint16_t length, u16());
  if (length > max_bytes) {
    return too_large_error(std::string(what) + " of " + std::to_string(length) +
                           " bytes exceeds the limit of " + std::to_string(max_bytes));
  }
  if (length > remaining()) return protocol_error(std::string(what) + " truncated");
  std::string text(reinterpret_cast<const char*>(bytes_.data() + offset_), length);
  offset_ += length;
  return text;
}

}  // namespace hivemind::protocol
