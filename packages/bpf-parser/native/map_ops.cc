// Map element operations on a map fd: lookup, update, delete, iterate, batch.
#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "common.h"
#include "ops.h"

namespace dnsplane_bpf {
namespace {

constexpr uint32_t kBatchChunk = 256;

// mapLookup(fd, key, valueLength) -> Buffer | undefined
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  ByteView key = Bytes(info[1], "key");
  const uint32_t value_len = Uint32Arg(info, 2, "value length");
  auto value = Napi::Buffer<uint8_t>::New(env, value_len);
  if (bpf_map_lookup_elem(fd, key.data, value.Data()) != 0) {
    if (errno == ENOENT) return env.Undefined();
    ThrowErrno(env, errno, "map lookup");
  }
  return value;
}

// mapUpdate(fd, key, value, flags)
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  ByteView key = Bytes(info[1], "key");
  ByteView value = Bytes(info[2], "value");
  const uint32_t flags = Uint32Arg(info, 3, "flags");
  if (bpf_map_update_elem(fd, key.data, value.data, flags) != 0) ThrowErrno(env, errno, "map update");
  return env.Undefined();
}

// mapDelete(fd, key) -> boolean (false when the key was absent)
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  ByteView key = Bytes(info[1], "key");
  if (bpf_map_delete_elem(fd, key.data) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "map delete");
  }
  return Napi::Boolean::New(env, true);
}

// mapNextKey(fd, key | null, keySize) -> Buffer | undefined (undefined after the last key)
Napi::Value MapNextKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  const void* prev = nullptr;
  if (!info[1].IsNull() && !info[1].IsUndefined()) prev = Bytes(info[1], "key").data;
  const uint32_t key_size = Uint32Arg(info, 2, "key size");
  auto next = Napi::Buffer<uint8_t>::New(env, key_size);
  if (bpf_map_get_next_key(fd, prev, next.Data()) != 0) {
    if (errno == ENOENT) return env.Undefined();
    ThrowErrno(env, errno, "map next key");
  }
  return next;
}

// mapLookupBatch(fd, keySize, valueLength, capacity) -> { keys, values, count }
// Reads the whole map with BPF_MAP_LOOKUP_BATCH, chunk by chunk.
Napi::Value MapLookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  const uint32_t key_size = Uint32Arg(info, 1, "key size");
  const uint32_t value_len = Uint32Arg(info, 2, "value length");
  const uint32_t capacity = Uint32Arg(info, 3, "capacity");
  std::vector<uint8_t> keys(static_cast<size_t>(capacity) * key_size);
  std::vector<uint8_t> values(static_cast<size_t>(capacity) * value_len);
  // Hash maps use a 4-byte bucket cursor, array maps a key-sized one.
  const size_t token_size = std::max<size_t>(key_size, 8);
  std::vector<uint8_t> in_token(token_size), out_token(token_size);
  auto opts = ZeroedOpts<bpf_map_batch_opts>();
  uint32_t total = 0;
  bool first = true;
  while (total < capacity) {
    __u32 count = std::min(kBatchChunk, capacity - total);
    int ret = bpf_map_lookup_batch(fd, first ? nullptr : in_token.data(), out_token.data(),
                                   keys.data() + static_cast<size_t>(total) * key_size,
                                   values.data() + static_cast<size_t>(total) * value_len, &count,
                                   &opts);
    const int err = ret != 0 ? errno : 0;
    if (ret != 0 && err != ENOENT) ThrowErrno(env, err, "map lookup batch");
    total += count;
    if (err == ENOENT) break;
    first = false;
    in_token.swap(out_token);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), static_cast<size_t>(total) * key_size));
  out.Set("values",
          Napi::Buffer<uint8_t>::Copy(env, values.data(), static_cast<size_t>(total) * value_len));
  out.Set("count", total);
  return out;
}

// mapUpdateBatch(fd, keys, values, count, flags) -> count
Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  ByteView keys = Bytes(info[1], "keys");
  ByteView values = Bytes(info[2], "values");
  __u32 count = Uint32Arg(info, 3, "count");
  auto opts = ZeroedOpts<bpf_map_batch_opts>();
  opts.elem_flags = Uint32Arg(info, 4, "flags");
  if (count == 0) return Napi::Number::New(env, 0);
  if (bpf_map_update_batch(fd, keys.data, values.data, &count, &opts) != 0) {
    ThrowErrno(env, errno, "map update batch");
  }
  return Napi::Number::New(env, count);
}

// mapDeleteBatch(fd, keys, count) -> count
Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "fd");
  ByteView keys = Bytes(info[1], "keys");
  __u32 count = Uint32Arg(info, 2, "count");
  auto opts = ZeroedOpts<bpf_map_batch_opts>();
  if (count == 0) return Napi::Number::New(env, 0);
  if (bpf_map_delete_batch(fd, keys.data, &count, &opts) != 0) {
    ThrowErrno(env, errno, "map delete batch");
  }
  return Napi::Number::New(env, count);
}

}  // namespace

void RegisterMapOps(Napi::Env env, Napi::Object exports) {
  exports.Set("mapLookup", Napi::Function::New<MapLookup>(env, "mapLookup"));
  exports.Set("mapUpdate", Napi::Function::New<MapUpdate>(env, "mapUpdate"));
  exports.Set("mapDelete", Napi::Function::New<MapDelete>(env, "mapDelete"));
  exports.Set("mapNextKey", Napi::Function::New<MapNextKey>(env, "mapNextKey"));
  exports.Set("mapLookupBatch", Napi::Function::New<MapLookupBatch>(env, "mapLookupBatch"));
  exports.Set("mapUpdateBatch", Napi::Function::New<MapUpdateBatch>(env, "mapUpdateBatch"));
  exports.Set("mapDeleteBatch", Napi::Function::New<MapDeleteBatch>(env, "mapDeleteBatch"));
}

}  // namespace dnsplane_bpf
