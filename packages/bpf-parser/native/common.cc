#include "common.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace dnsplane_bpf {
namespace {

// Only the tail of a long verifier log is kept: the reason for a rejection is at its end.
constexpr size_t kMaxCapturedLog = 256 * 1024;

// Per thread: an object load may run on a libuv worker (loadAsync) while the main thread
// makes other calls; each captures what libbpf prints on its own thread.
thread_local bool g_capturing = false;
thread_local std::string g_captured;

int PrintToCapture(enum libbpf_print_level level, const char* format, va_list args) {
  static const bool debug_to_stderr = std::getenv("DNSPLANE_LIBBPF_DEBUG") != nullptr;
  va_list copy;
  va_copy(copy, args);
  if (debug_to_stderr) vfprintf(stderr, format, copy);
  va_end(copy);
  if (!g_capturing || level == LIBBPF_DEBUG) return 0;
  char small[512];
  va_list sized;
  va_copy(sized, args);
  int needed = vsnprintf(small, sizeof(small), format, sized);
  va_end(sized);
  if (needed < 0) return 0;
  if (static_cast<size_t>(needed) < sizeof(small)) {
    g_captured.append(small, static_cast<size_t>(needed));
  } else {
    std::string big(static_cast<size_t>(needed) + 1, '\0');
    vsnprintf(big.data(), big.size(), format, args);
    big.resize(static_cast<size_t>(needed));
    g_captured += big;
  }
  if (g_captured.size() > kMaxCapturedLog) {
    g_captured.erase(0, g_captured.size() - kMaxCapturedLog);
  }
  return 0;
}

}  // namespace

void InstallLibbpfPrint() { libbpf_set_print(PrintToCapture); }

LogCapture::LogCapture() : previous_(g_capturing) {
  if (!previous_) g_captured.clear();
  g_capturing = true;
}

LogCapture::~LogCapture() {
  g_capturing = previous_;
  if (!previous_) g_captured.clear();
}

std::string LogCapture::Take() {
  std::string out;
  out.swap(g_captured);
  return out;
}

void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& log) {
  throw ErrnoError(env, err, op, log);
}

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& op, const std::string& log) {
  if (err < 0) err = -err;
  char buf[256];
  const char* text = nullptr;
  if (err == 524) {
    text = "Operation not supported (ENOTSUPP)";
  } else {
    text = strerror_r(err, buf, sizeof(buf));
  }
  Napi::Error error = Napi::Error::New(env, op + ": " + text);
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("op", Napi::String::New(env, op));
  error.Set("log", Napi::String::New(env, log));
  const char* name = err == 524 ? "ENOTSUPP" : strerrorname_np(err);
  if (name != nullptr) error.Set("code", Napi::String::New(env, name));
  return error;
}

ByteView Bytes(const Napi::Value& value, const char* what) {
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(value.Env(), std::string(what) + " must be a Buffer or Uint8Array");
  }
  auto array = value.As<Napi::Uint8Array>();
  return ByteView{array.Data(), array.ByteLength()};
}

int32_t Int32Arg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (!info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  }
  return info[index].As<Napi::Number>().Int32Value();
}

uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (!info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (value < 0 || value > 4294967295.0 || value != static_cast<double>(static_cast<uint32_t>(value))) {
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an unsigned 32-bit integer");
  }
  return static_cast<uint32_t>(value);
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (!info[index].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

}  // namespace dnsplane_bpf
