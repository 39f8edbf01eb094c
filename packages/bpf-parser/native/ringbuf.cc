#include "ringbuf.h"

#include <bpf/libbpf.h>

#include <cerrno>

#include "common.h"

namespace dnsplane_bpf {

Napi::Function RingBufferHandle::Define(Napi::Env env) {
  return DefineClass(env, "RingBufferHandle",
                     {
                         InstanceMethod<&RingBufferHandle::Consume>("consume"),
                         InstanceMethod<&RingBufferHandle::Close>("close"),
                         InstanceMethod<&RingBufferHandle::Ref>("ref"),
                         InstanceMethod<&RingBufferHandle::Unref>("unref"),
                     });
}

// new RingBufferHandle(mapFd, onRecord)
RingBufferHandle::RingBufferHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<RingBufferHandle>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  const int fd = Int32Arg(info, 0, "map fd");
  if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "onRecord must be a function");
  on_record_ = Napi::Persistent(info[1].As<Napi::Function>());

  LogCapture capture;
  errno = 0;
  rb_ = ring_buffer__new(fd, &RingBufferHandle::OnRecord, this, nullptr);
  if (rb_ == nullptr) ThrowErrno(env, errno != 0 ? errno : EINVAL, "ring buffer", capture.Take());

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    ring_buffer__free(rb_);
    rb_ = nullptr;
    throw Napi::Error::New(env, "ring buffer: no event loop");
  }
  poll_ = new uv_poll_t;
  poll_->data = this;
  int err = uv_poll_init(loop, poll_, ring_buffer__epoll_fd(rb_));
  if (err == 0) err = uv_poll_start(poll_, UV_READABLE, &RingBufferHandle::OnReadable);
  if (err != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    poll_ = nullptr;
    ring_buffer__free(rb_);
    rb_ = nullptr;
    ThrowErrno(env, -err, "ring buffer poll");
  }
  // The consumer stays alive (not garbage collected) until close().
  Napi::ObjectWrap<RingBufferHandle>::Ref();
  held_ = true;
}

RingBufferHandle::~RingBufferHandle() { Release(); }

void RingBufferHandle::Release() {
  closed_ = true;
  if (poll_ != nullptr) {
    poll_->data = nullptr;
    // uv_close stops watching the fd synchronously; the handle memory is freed later.
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    poll_ = nullptr;
  }
  if (rb_ != nullptr) ring_buffer__free(rb_);
  rb_ = nullptr;
}

int RingBufferHandle::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<RingBufferHandle*>(ctx);
  if (self->closed_) return -ECANCELED;  // stops ring_buffer__consume
  Napi::Env env = self->env_;
  Napi::Buffer<uint8_t> record = Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(data), size);
  try {
    self->on_record_.MakeCallback(self->Value(), {record});
  } catch (const Napi::Error& error) {
    // The TypeScript wrapper catches its callback's errors; anything else is uncaught.
    napi_fatal_exception(env, error.Value());
  }
  return 0;
}

int RingBufferHandle::Drain() {
  if (rb_ == nullptr || draining_) return 0;
  draining_ = true;
  int n = ring_buffer__consume(rb_);
  draining_ = false;
  // close() called from inside a record callback: finish it now that libbpf is done.
  if (closed_) Release();
  return n;
}

void RingBufferHandle::OnReadable(uv_poll_t* poll, int status, int /*events*/) {
  auto* self = static_cast<RingBufferHandle*>(poll->data);
  if (self == nullptr || self->closed_) return;
  Napi::HandleScope scope(self->env_);
  if (status < 0) return;
  self->Drain();
}

// consume(): drains records now (they are also delivered by the event loop on their own).
Napi::Value RingBufferHandle::Consume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) return Napi::Number::New(env, 0);
  int n = Drain();
  if (n < 0 && n != -ECANCELED) ThrowErrno(env, -n, "ring buffer consume");
  return Napi::Number::New(env, n < 0 ? 0 : n);
}

Napi::Value RingBufferHandle::Close(const Napi::CallbackInfo& info) {
  if (!closed_) {
    closed_ = true;
    if (!draining_) Release();
    on_record_.Reset();
  }
  if (held_) {
    held_ = false;
    Napi::ObjectWrap<RingBufferHandle>::Unref();
  }
  return info.Env().Undefined();
}

Napi::Value RingBufferHandle::Ref(const Napi::CallbackInfo& info) {
  if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
  return info.Env().Undefined();
}

Napi::Value RingBufferHandle::Unref(const Napi::CallbackInfo& info) {
  if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  return info.Env().Undefined();
}

}  // namespace dnsplane_bpf
