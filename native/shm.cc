#include "shm.h"

#include <cerrno>
#include <cstring>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define AE_HAVE_SHM 1
#endif

namespace ae {

bool shm_name_valid(const std::string& name) {
  if (name.empty() || name.size() > 200 || name == "." || name == "..") return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

#if defined(AE_HAVE_SHM)

namespace {

std::string errno_text(const char* what, const std::string& name) {
  return std::string(what) + " /dev/shm/" + name + ": " + std::strerror(errno);
}

// MAP_POPULATE builds the page tables in one call: faulting a 1 GB segment in page by page costs more
// than the kernel reading it.
#if defined(MAP_POPULATE)
constexpr int kPopulate = MAP_POPULATE;
#else
constexpr int kPopulate = 0;
#endif

}  // namespace

bool shm_create(const std::string& name, size_t bytes, ShmMapping& out, std::string& error) {
  if (!shm_name_valid(name)) return error = "invalid segment name", false;
  if (bytes == 0) return error = "a segment needs at least one byte", false;
  const std::string path = "/" + name;
  const int fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return error = errno_text("shm_open", name), false;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    error = errno_text("ftruncate", name);
    close(fd);
    ::shm_unlink(path.c_str());
    return false;
  }
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (data == MAP_FAILED) {
    error = errno_text("mmap", name);
    ::shm_unlink(path.c_str());
    return false;
  }
  out.data = data;
  out.bytes = bytes;
  return true;
}

bool shm_map(const std::string& name, ShmMapping& out, std::string& error) {
  if (!shm_name_valid(name)) return error = "invalid segment name", false;
  const std::string path = "/" + name;
  const int fd = shm_open(path.c_str(), O_RDWR, 0);
  if (fd < 0) return error = errno_text("shm_open", name), false;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    error = errno_text("fstat", name);
    close(fd);
    return false;
  }
  if (st.st_size <= 0) {
    close(fd);
    return error = "segment /dev/shm/" + name + " is empty", false;
  }
  const size_t bytes = static_cast<size_t>(st.st_size);
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | kPopulate, fd, 0);
  close(fd);
  if (data == MAP_FAILED) return error = errno_text("mmap", name), false;
  out.data = data;
  out.bytes = bytes;
  return true;
}

void shm_unmap(const ShmMapping& mapping) {
  if (mapping.data != nullptr) munmap(mapping.data, mapping.bytes);
}

bool shm_unlink(const std::string& name, std::string& error) {
  if (!shm_name_valid(name)) return error = "invalid segment name", false;
  const std::string path = "/" + name;
  if (::shm_unlink(path.c_str()) != 0) return error = errno_text("shm_unlink", name), false;
  return true;
}

#else  // no POSIX shared memory: the bridge sends every tensor through the pipe

bool shm_create(const std::string&, size_t, ShmMapping&, std::string& error) {
  return error = "shared memory is not supported on this platform", false;
}
bool shm_map(const std::string&, ShmMapping&, std::string& error) {
  return error = "shared memory is not supported on this platform", false;
}
void shm_unmap(const ShmMapping&) {}
bool shm_unlink(const std::string&, std::string& error) {
  return error = "shared memory is not supported on this platform", false;
}

#endif

}  // namespace ae
