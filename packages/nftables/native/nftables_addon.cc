// A thin binding over libnftables: one nft context per NftContext object, output and
// errors buffered, JSON output on. `run` executes on the calling thread (tiny commands);
// `runAsync` on a libuv worker thread so large documents never block the event loop. A
// context is not thread-safe: one call at a time (the TypeScript side serialises calls;
// the addon refuses overlapping ones). Every command runs with the thread's asynchronous
// signals held back (signals_held.h): libnftables waits for the kernel's acknowledgements
// with select(), which a signal interrupts, and would report a committed transaction as failed.
#include <napi.h>
#include <malloc.h>
#include <nftables/libnftables.h>

#include "signals_held.h"

#include <string>
#include <utility>

namespace {

struct RunResult {
  int code = 0;
  std::string output;
  std::string error;
};

// Runs one command on a context; the caller guarantees exclusive use of the context.
RunResult RunCommand(struct nft_ctx* ctx, const std::string& command, bool dry_run, bool terse) {
  nft_ctx_set_dry_run(ctx, dry_run);
  // terse: listings leave out set elements (much cheaper for tables with many elements)
  const unsigned int flags = static_cast<unsigned int>(NFT_CTX_OUTPUT_JSON) |
                            (terse ? static_cast<unsigned int>(NFT_CTX_OUTPUT_TERSE) : 0u);
  nft_ctx_output_set_flags(ctx, flags);
  RunResult result;
  {
    const dnsplane::SignalsHeld held;  // a signal during select() would misreport a commit
    result.code = nft_run_cmd_from_buffer(ctx, command.c_str());
  }
  nft_ctx_set_dry_run(ctx, false);
  const char* output = nft_ctx_get_output_buffer(ctx);
  const char* error = nft_ctx_get_error_buffer(ctx);
  result.output = output != nullptr ? output : "";
  result.error = error != nullptr ? error : "";
  return result;
}

Napi::Object ResultObject(Napi::Env env, const RunResult& result) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("code", Napi::Number::New(env, result.code));
  object.Set("output", Napi::String::New(env, result.output));
  object.Set("error", Napi::String::New(env, result.error));
  return object;
}

class NftContext;

// A command or listing this large leaves libnftables' parse trees and cache freed in this
// worker thread's malloc arena, which glibc keeps: give the free pages back.
constexpr size_t kTrimAfterBytes = 1 << 20;

class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, NftContext* owner, struct nft_ctx* ctx, std::string command, bool dry_run, bool terse)
      : Napi::AsyncWorker(env), owner_(owner), ctx_(ctx), command_(std::move(command)), dry_run_(dry_run),
        terse_(terse), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    result_ = RunCommand(ctx_, command_, dry_run_, terse_);
    if (command_.size() + result_.output.size() > kTrimAfterBytes) {
      std::string().swap(command_);
      malloc_trim(0);
    }
  }
  void OnOK() override;

 private:
  NftContext* owner_;
  struct nft_ctx* ctx_;
  std::string command_;
  bool dry_run_;
  bool terse_;
  RunResult result_;
  Napi::Promise::Deferred deferred_;
};

class NftContext : public Napi::ObjectWrap<NftContext> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "NftContext",
                                      {InstanceMethod("run", &NftContext::Run),
                                       InstanceMethod("runAsync", &NftContext::RunAsync),
                                       InstanceMethod("close", &NftContext::Close)});
    exports.Set("NftContext", ctor);
    return exports;
  }

  explicit NftContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftContext>(info) {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx_ == nullptr) {
      Napi::Error::New(info.Env(), "nft_ctx_new failed").ThrowAsJavaScriptException();
      return;
    }
    nft_ctx_output_set_flags(ctx_, NFT_CTX_OUTPUT_JSON);
    if (nft_ctx_buffer_output(ctx_) != 0 || nft_ctx_buffer_error(ctx_) != 0) {
      nft_ctx_free(ctx_);
      ctx_ = nullptr;
      Napi::Error::New(info.Env(), "nft_ctx_buffer_output/error failed").ThrowAsJavaScriptException();
    }
  }

  ~NftContext() override { Free(); }

  // Called on the main thread when a worker finished.
  void WorkerDone() {
    busy_ = false;
    if (close_requested_) Free();
    Unref();
  }

 private:
  void Free() {
    if (ctx_ != nullptr) {
      nft_ctx_free(ctx_);
      ctx_ = nullptr;
    }
  }

  bool CheckUsable(Napi::Env env, const Napi::CallbackInfo& info) {
    if (ctx_ == nullptr || close_requested_) {
      Napi::Error::New(env, "nft context is closed").ThrowAsJavaScriptException();
      return false;
    }
    if (busy_) {
      Napi::Error::New(env, "nft context is busy (one call at a time)").ThrowAsJavaScriptException();
      return false;
    }
    if (info.Length() < 1 || !info[0].IsString()) {
      Napi::TypeError::New(env, "run(command: string, dryRun?: boolean, terse?: boolean)").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  // run(command: string, dryRun?: boolean, terse?: boolean) -> { code, output, error }
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env, info)) return env.Undefined();
    const bool dry_run = info.Length() > 1 && info[1].ToBoolean().Value();
    const bool terse = info.Length() > 2 && info[2].ToBoolean().Value();
    return ResultObject(env, RunCommand(ctx_, info[0].As<Napi::String>().Utf8Value(), dry_run, terse));
  }

  // runAsync(command, dryRun?, terse?) -> Promise<{ code, output, error }>, on a worker thread
  Napi::Value RunAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckUsable(env, info)) return env.Undefined();
    const bool dry_run = info.Length() > 1 && info[1].ToBoolean().Value();
    const bool terse = info.Length() > 2 && info[2].ToBoolean().Value();
    auto* worker = new RunWorker(env, this, ctx_, info[0].As<Napi::String>().Utf8Value(), dry_run, terse);
    busy_ = true;
    Ref();  // keep this object alive while the worker uses its context
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (busy_) {
      close_requested_ = true;  // freed when the running worker finishes
    } else {
      Free();
    }
    return info.Env().Undefined();
  }

  bool busy_ = false;
  bool close_requested_ = false;
  struct nft_ctx* ctx_ = nullptr;
};

void RunWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  deferred_.Resolve(ResultObject(env, result_));
  owner_->WorkerDone();
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return NftContext::Init(env, exports); }

}  // namespace

NODE_API_MODULE(nftables_addon, InitModule)
