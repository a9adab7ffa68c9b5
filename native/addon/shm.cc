// N-API glue for shared-memory segments (native/shm.h): a mapping becomes an external ArrayBuffer whose
// finalizer unmaps it. shmUnmap detaches the buffer first (every view of it then has length 0), so JS can
// never touch unmapped memory; the finalizer then only frees its record. lib/bridge/shm.ts calls these and
// unmaps a segment only when no running op holds it.
#include "../shm.h"

#include <unordered_map>

#include "glue.h"

namespace ae {
namespace {

struct Mapping {
  ShmMapping shm;
  bool unmapped = false;
};

// Live mappings by base address, to find a buffer's record in shmUnmap. Touched on the JS thread only
// (calls and finalizers both run there).
std::unordered_map<void*, Mapping*>& live() {
  static std::unordered_map<void*, Mapping*> mappings;
  return mappings;
}

void finalize(Napi::Env, void*, Mapping* m) {
  if (!m->unmapped) {
    shm_unmap(m->shm);
    live().erase(m->shm.data);
  }
  delete m;
}

Napi::ArrayBuffer wrap(Napi::Env env, const ShmMapping& shm) {
  Mapping* m = new Mapping{shm};
  live()[shm.data] = m;
  return Napi::ArrayBuffer::New(env, shm.data, shm.bytes, finalize, m);
}

std::string name_arg(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) glue::throw_error(info.Env(), "ERR_INVALID_ARG_TYPE", "Expected a string for name");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (!shm_name_valid(name)) {
    glue::throw_error(info.Env(), "ERR_INVALID_ARG_VALUE", "Expected a segment name of [A-Za-z0-9._-]{1,200} for name");
  }
  return name;
}

// JS: shmCreate(name, bytes) → ArrayBuffer over a new segment (read-write).
Napi::Value JSShmCreate(const Napi::CallbackInfo& info) {
  const std::string name = name_arg(info);
  const index_t bytes = glue::index_arg(info, 1, "bytes");
  ShmMapping shm;
  std::string error;
  if (!shm_create(name, static_cast<size_t>(bytes), shm, error)) glue::throw_error(info.Env(), "ERR_AE_SHM", error);
  return wrap(info.Env(), shm);
}

// JS: shmMap(name) → ArrayBuffer over an existing segment, whole (read-write).
Napi::Value JSShmMap(const Napi::CallbackInfo& info) {
  const std::string name = name_arg(info);
  ShmMapping shm;
  std::string error;
  if (!shm_map(name, shm, error)) glue::throw_error(info.Env(), "ERR_AE_SHM", error);
  return wrap(info.Env(), shm);
}

// JS: shmUnmap(arrayBuffer) → true when the buffer was a live mapping (now detached and unmapped).
Napi::Value JSShmUnmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) glue::throw_error(env, "ERR_INVALID_ARG_TYPE", "Expected an ArrayBuffer for buffer");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  auto it = live().find(ab.Data());
  if (ab.ByteLength() == 0 || it == live().end()) return Napi::Boolean::New(env, false);
  Mapping* m = it->second;
  ab.Detach();
  shm_unmap(m->shm);
  m->unmapped = true;
  live().erase(it);
  return Napi::Boolean::New(env, true);
}

// JS: shmUnlink(name) → true when the name was removed, false when it did not exist.
Napi::Value JSShmUnlink(const Napi::CallbackInfo& info) {
  const std::string name = name_arg(info);
  std::string error;
  return Napi::Boolean::New(info.Env(), shm_unlink(name, error));
}

}  // namespace

void init_shm(Napi::Env env, Napi::Object exports) {
  exports.Set("shmCreate", Napi::Function::New(env, JSShmCreate, "shmCreate"));
  exports.Set("shmMap", Napi::Function::New(env, JSShmMap, "shmMap"));
  exports.Set("shmUnmap", Napi::Function::New(env, JSShmUnmap, "shmUnmap"));
  exports.Set("shmUnlink", Napi::Function::New(env, JSShmUnlink, "shmUnlink"));
}

}  // namespace ae
