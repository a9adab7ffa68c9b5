// POSIX shared-memory segments for the Python bridge (lib/bridge, DESIGN "The Python bridge"): large
// tensors travel through a segment under /dev/shm named in a frame's header instead of through the pipe,
// so neither side serialises or copies them. Plain C++ on POSIX calls, no Node headers: the glue in
// native/addon/shm.cc wraps a mapping in an external ArrayBuffer.
//
// Names are validated here too (no '/', bounded length): a name comes from the other process.
#pragma once

#include <cstddef>
#include <string>

namespace ae {

struct ShmMapping {
  void* data = nullptr;
  size_t bytes = 0;
};

// Creates a new segment `name` (exclusive, mode 0600) of `bytes` > 0 and maps it read-write.
bool shm_create(const std::string& name, size_t bytes, ShmMapping& out, std::string& error);
// Maps an existing segment whole (its size from fstat), read-write, pages populated up front.
bool shm_map(const std::string& name, ShmMapping& out, std::string& error);
void shm_unmap(const ShmMapping& mapping);
// Removes the name; false with `error` when it did not exist or could not be removed.
bool shm_unlink(const std::string& name, std::string& error);
// A name the bridge accepts: [A-Za-z0-9._-]{1,200} (the segment lives at /dev/shm/<name>).
bool shm_name_valid(const std::string& name);

}  // namespace ae
