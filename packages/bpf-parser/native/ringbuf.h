// Consumes a BPF ring buffer on the Node event loop: libuv polls the ring buffer's epoll fd
// and every record is handed to a JavaScript callback. No timers.
#pragma once

#include <napi.h>
#include <uv.h>

struct ring_buffer;

namespace dnsplane_bpf {

class RingBufferHandle : public Napi::ObjectWrap<RingBufferHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit RingBufferHandle(const Napi::CallbackInfo& info);
  ~RingBufferHandle() override;

 private:
  static void OnReadable(uv_poll_t* poll, int status, int events);
  static int OnRecord(void* ctx, void* data, size_t size);
  int Drain();
  void Release();

  Napi::Value Consume(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);

  Napi::Env env_;
  Napi::FunctionReference on_record_;
  ring_buffer* rb_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  bool closed_ = false;
  bool draining_ = false;
  bool held_ = false;
};

}  // namespace dnsplane_bpf
