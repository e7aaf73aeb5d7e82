// LiteRT / TensorFlow Lite external delegate running the NHWC fused TVConv kernel.
//
// Contract with the export side (edgeconv/export/litert_fused.py), composite op
// STABLEHLO_COMPOSITE named "edgeconv.tvconv", attributes (a FlexBuffer map)
//   {kernel_size: int 3|5, stride: int 1|2, activation: "none"|"relu"|"relu6",
//    layout: "h_w_kk_c", kernel_version: 1}
// Inputs:  0 X float32 NHWC (N, H, W, C)
//          1 W (h, w, k*k, C) float32 | float16 | int8 (a constant, or a float32 tensor made
//            at run time, e.g. by a DEQUANTIZE node: read at Eval)
//          2 scales (k*k, C) float32 (ones for float weights; applied to any weight type)
//          3 bias float32 (C,) or (h, w, C) (zeros when the layer has none)
// Output:  0 Y float32 NHWC (N, h, w, C), h = (H + 2p - k)/s + 1, p = k/2.
//
// Loaded by `ai_edge_litert.interpreter.load_delegate(path, options)`, which calls
// tflite_plugin_create_delegate. Options: "isa" (scalar|avx2|avx512|neon|auto; default
// $EDGECONV_KERNEL_ISA or auto), "num_threads" (default: the interpreter's
// recommended_num_threads, 1 when unset). A node whose attributes do not parse (or do not
// match the contract) is not claimed: the interpreter runs the composite's decomposition.
// Each claimed node becomes its own delegate kernel. The delegate allows dynamic tensors, so
// the interpreter does not prepare the (unknown to it) composite before delegation, and a
// resized input batch resizes the output here (Prepare).
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "tflite_c.h"
#include "tvconv_kernel.h"
#include "version.h"

#define EDGECONV_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr const char* kCompositeName = "edgeconv.tvconv";
constexpr int kMaxThreads = 256;

// ---------------------------------------------------------------------------------------
// A bounded, validating reader of a FlexBuffer map holding ints and strings (the composite's
// attributes). Every offset and size is checked against the buffer; anything unexpected
// makes the whole map invalid (the node is then not claimed).

enum FlexType : int {
  kFlexNull = 0, kFlexInt = 1, kFlexUInt = 2, kFlexFloat = 3, kFlexKey = 4, kFlexString = 5,
  kFlexIndirectInt = 6, kFlexIndirectUInt = 7, kFlexMap = 9, kFlexBool = 26,
};

constexpr uint64_t kFlexMaxEntries = 64;
constexpr uint64_t kFlexMaxString = 256;

struct FlexReader {
  const uint8_t* buf;
  size_t len;

  static bool width_ok(uint64_t w) { return w == 1 || w == 2 || w == 4 || w == 8; }

  bool read_uint(size_t pos, uint64_t width, uint64_t* out) const {
    if (!width_ok(width) || pos > len || width > len - pos) return false;
    uint64_t v = 0;
    for (uint64_t b = 0; b < width; ++b) v |= static_cast<uint64_t>(buf[pos + b]) << (8 * b);
    *out = v;
    return true;
  }
  bool read_int(size_t pos, uint64_t width, int64_t* out) const {
    uint64_t u;
    if (!read_uint(pos, width, &u)) return false;
    if (width < 8) {
      const uint64_t sign = uint64_t{1} << (8 * width - 1);
      u = (u ^ sign) - sign;  // sign-extend
    }
    *out = static_cast<int64_t>(u);
    return true;
  }
  // The position an offset stored at `slot` (width bytes) points back to.
  bool deref(size_t slot, uint64_t width, size_t* target) const {
    uint64_t off;
    if (!read_uint(slot, width, &off) || off > slot) return false;
    *target = slot - static_cast<size_t>(off);
    return true;
  }
  // A NUL-terminated key at pos (bounded length).
  bool key(size_t pos, std::string* out) const {
    if (pos >= len) return false;
    for (size_t i = pos; i < len && i - pos <= kFlexMaxString; ++i)
      if (buf[i] == 0) {
        out->assign(reinterpret_cast<const char*>(buf + pos), i - pos);
        return true;
      }
    return false;
  }
  // A string whose size (width bytes) precedes it at pos.
  bool string(size_t pos, uint64_t width, std::string* out) const {
    uint64_t n;
    if (pos < width || !read_uint(pos - width, width, &n) || n > kFlexMaxString) return false;
    if (pos > len || n >= len - pos) return false;  // needs the terminating NUL inside too
    out->assign(reinterpret_cast<const char*>(buf + pos), static_cast<size_t>(n));
    return true;
  }
};

struct FlexValue {
  bool is_int = false, is_string = false;
  int64_t i = 0;
  std::string s;
};

// Reads the value of every key of the root map that `wanted` accepts (ints and strings; other
// value types are passed as neither); the other keys' values are not looked at. Returns
// false for a malformed buffer.
template <class Wanted, class Fn>
bool flex_map_for_each(const uint8_t* data, size_t size, Wanted&& wanted, Fn&& fn) {
  if (data == nullptr || size < 3 || size > (size_t{1} << 24)) return false;
  FlexReader r{data, size};
  const uint64_t root_width = data[size - 1];
  const uint8_t root_packed = data[size - 2];
  if (!FlexReader::width_ok(root_width) || size < 2 + root_width) return false;
  if ((root_packed >> 2) != kFlexMap) return false;
  const size_t root_slot = size - 2 - static_cast<size_t>(root_width);
  size_t map;
  if (!r.deref(root_slot, root_width, &map)) return false;
  const uint64_t bw = uint64_t{1} << (root_packed & 3);  // the map's element width
  if (map < 3 * bw) return false;
  uint64_t n, keys_bw;
  if (!r.read_uint(map - bw, bw, &n) || n > kFlexMaxEntries) return false;
  if (!r.read_uint(map - 2 * bw, bw, &keys_bw) || !FlexReader::width_ok(keys_bw)) return false;
  size_t keys;
  if (!r.deref(map - 3 * bw, bw, &keys)) return false;
  uint64_t nkeys;
  if (keys < keys_bw || !r.read_uint(keys - keys_bw, keys_bw, &nkeys) || nkeys != n) return false;
  if (keys + n * keys_bw > size) return false;
  const size_t types = map + static_cast<size_t>(n * bw);
  if (map + n * bw + n > size) return false;
  for (size_t e = 0; e < n; ++e) {
    size_t kpos;
    std::string name;
    if (!r.deref(keys + e * keys_bw, keys_bw, &kpos) || !r.key(kpos, &name)) return false;
    if (!wanted(name)) continue;
    const uint8_t packed = data[types + e];
    const int type = packed >> 2;
    const uint64_t cw = uint64_t{1} << (packed & 3);  // width of an indirect child
    const size_t slot = map + e * bw;
    FlexValue v;
    switch (type) {
      case kFlexInt:
        if (!r.read_int(slot, bw, &v.i)) return false;
        v.is_int = true;
        break;
      case kFlexUInt:
      case kFlexBool: {
        uint64_t u;
        if (!r.read_uint(slot, bw, &u) || u > static_cast<uint64_t>(INT64_MAX)) return false;
        v.i = static_cast<int64_t>(u);
        v.is_int = true;
        break;
      }
      case kFlexIndirectInt:
      case kFlexIndirectUInt: {
        size_t target;
        if (!r.deref(slot, bw, &target)) return false;
        if (type == kFlexIndirectInt) {
          if (!r.read_int(target, cw, &v.i)) return false;
        } else {
          uint64_t u;
          if (!r.read_uint(target, cw, &u) || u > static_cast<uint64_t>(INT64_MAX)) return false;
          v.i = static_cast<int64_t>(u);
        }
        v.is_int = true;
        break;
      }
      case kFlexString: {
        size_t target;
        if (!r.deref(slot, bw, &target) || !r.string(target, cw, &v.s)) return false;
        v.is_string = true;
        break;
      }
      case kFlexKey: {
        size_t target;
        if (!r.deref(slot, bw, &target) || !r.key(target, &v.s)) return false;
        v.is_string = true;
        break;
      }
      default:
        break;  // floats, vectors, nested maps, ...: not ours, skipped
    }
    fn(name, v);
  }
  return true;
}

struct TVConvAttrs {
  int k = 0, s = 0, act = 0;
};

// The composite's attributes if they parse and match the contract.
bool parse_attrs(const uint8_t* data, size_t size, TVConvAttrs* out) {
  bool have_k = false, have_s = false, have_act = false, have_layout = false, have_ver = false;
  bool bad = false;
  TVConvAttrs a;
  auto wanted = [](const std::string& key) {
    return key == "kernel_size" || key == "stride" || key == "activation" || key == "layout" ||
           key == "kernel_version";
  };
  const bool ok = flex_map_for_each(data, size, wanted, [&](const std::string& key,
                                                           const FlexValue& v) {
    if (key == "kernel_size") {
      if (!v.is_int || (v.i != 3 && v.i != 5)) bad = true;
      a.k = static_cast<int>(v.i);
      have_k = true;
    } else if (key == "stride") {
      if (!v.is_int || (v.i != 1 && v.i != 2)) bad = true;
      a.s = static_cast<int>(v.i);
      have_s = true;
    } else if (key == "activation") {
      if (!v.is_string) bad = true;
      else if (v.s == "none") a.act = edgeconv::kActNone;
      else if (v.s == "relu") a.act = edgeconv::kActRelu;
      else if (v.s == "relu6") a.act = edgeconv::kActRelu6;
      else bad = true;
      have_act = true;
    } else if (key == "layout") {
      if (!v.is_string || v.s != EDGECONV_NHWC_LAYOUT) bad = true;
      have_layout = true;
    } else if (key == "kernel_version") {
      if (!v.is_int || v.i != EDGECONV_NHWC_KERNEL_VERSION) bad = true;
      have_ver = true;
    }
  });
  if (!ok || bad || !have_k || !have_s || !have_act || !have_layout || !have_ver) return false;
  *out = a;
  return true;
}

// ---------------------------------------------------------------------------------------
// The delegate's thread pool: the caller plus n - 1 workers that sleep on a condition
// variable between jobs. run() hands out task indices; which thread runs a task never
// changes what the task computes.

class Pool {
 public:
  explicit Pool(int threads) {
    for (int t = 1; t < threads; ++t) {
      try {
        workers_.emplace_back([this] { loop(); });
      } catch (const std::system_error&) {
        break;  // fewer workers: same results, less parallel
      }
    }
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& th : workers_) th.join();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void run(int64_t tasks, void (*fn)(const void*, int64_t), const void* ctx) {
    std::lock_guard<std::mutex> serial(run_mu_);  // one job at a time (shared delegate)
    if (workers_.empty() || tasks <= 1) {
      for (int64_t t = 0; t < tasks; ++t) fn(ctx, t);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = fn;
      ctx_ = ctx;
      tasks_ = tasks;
      next_.store(0);
      pending_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [this] { return pending_ == 0; });
  }

 private:
  void work() {
    for (;;) {
      const int64_t t = next_.fetch_add(1);
      if (t >= tasks_) return;
      fn_(ctx_, t);
    }
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      work();
      std::lock_guard<std::mutex> lk(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable wake_, done_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  int pending_ = 0;
  void (*fn_)(const void*, int64_t) = nullptr;
  const void* ctx_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
};

// ---------------------------------------------------------------------------------------
// The delegate instance.

struct EdgeconvDelegate {
  TfLiteDelegate base;  // first: a TfLiteDelegate* is an EdgeconvDelegate*
  int isa = 0;
  int threads_option = 0;  // 0: the interpreter's recommended_num_threads
  std::atomic<int> claimed{0};
  std::mutex pool_mu;
  std::unique_ptr<Pool> pool;
  std::string isa_name;

  Pool* get_pool(int recommended) {
    std::lock_guard<std::mutex> lk(pool_mu);
    if (!pool) {
      int n = threads_option > 0 ? threads_option : recommended;
      if (n < 1) n = 1;
      if (n > kMaxThreads) n = kMaxThreads;
      pool.reset(new Pool(n));
    }
    return pool.get();
  }
};

std::mutex g_live_mu;
std::set<const void*>& live_delegates() {
  static std::set<const void*>* s = new std::set<const void*>();  // never destroyed
  return *s;
}

EdgeconvDelegate* as_live(TfLiteDelegate* d) {
  std::lock_guard<std::mutex> lk(g_live_mu);
  return live_delegates().count(d) ? reinterpret_cast<EdgeconvDelegate*>(d) : nullptr;
}

// One claimed node: its attributes and the tensors of the original composite node.
struct NodeData {
  EdgeconvDelegate* delegate = nullptr;
  TVConvAttrs attrs;
  int in[4] = {-1, -1, -1, -1};
  int out = -1;
  int bias_mode = edgeconv::kNoBias;
  int wtype = edgeconv::kF32;
  // float weights whose scales are all exactly 1 (what the exporter writes) run without them:
  // x * 1.0f is exact, so the result is the same, and the kernel saves a load and a multiply
  // per weight vector. Checked once per constant scales buffer.
  const float* scales_seen = nullptr;
  bool scales_ones = false;
};

// Whether node `index` of the context is a composite this delegate runs; fills attrs.
bool is_ours(TfLiteContext* context, int index, TfLiteNode** node_out, TVConvAttrs* attrs) {
  TfLiteNode* node = nullptr;
  TfLiteRegistration* reg = nullptr;
  if (context->GetNodeAndRegistration(context, index, &node, &reg) != kTfLiteOk || !node || !reg)
    return false;
  if (reg->builtin_code != kTfLiteBuiltinStablehloComposite || !node->builtin_data) return false;
  const auto* p = static_cast<const TfLiteStablehloCompositeParams*>(node->builtin_data);
  if (!p->name || std::strcmp(p->name, kCompositeName) != 0) return false;
  if (!p->attributes || !parse_attrs(p->attributes, p->attributes_size, attrs)) return false;
  if (!node->inputs || node->inputs->size != 4 || !node->outputs || node->outputs->size != 1)
    return false;
  for (int i = 0; i < 4; ++i) {
    const int t = node->inputs->data[i];
    if (t < 0 || static_cast<size_t>(t) >= context->tensors_size) return false;
  }
  const int o = node->outputs->data[0];
  if (o < 0 || static_cast<size_t>(o) >= context->tensors_size) return false;
  *node_out = node;
  return true;
}

void* kernel_init(TfLiteContext* context, const char* buffer, size_t) {
  const auto* params = reinterpret_cast<const TfLiteDelegateParams*>(buffer);
  if (!params || !params->nodes_to_replace || params->nodes_to_replace->size != 1) return nullptr;
  TfLiteNode* node = nullptr;
  TVConvAttrs attrs;
  if (!is_ours(context, params->nodes_to_replace->data[0], &node, &attrs)) return nullptr;
  auto* d = new (std::nothrow) NodeData();
  if (!d) return nullptr;
  d->delegate = reinterpret_cast<EdgeconvDelegate*>(params->delegate);
  d->attrs = attrs;
  for (int i = 0; i < 4; ++i) d->in[i] = node->inputs->data[i];
  d->out = node->outputs->data[0];
  return d;
}

void kernel_free(TfLiteContext*, void* buffer) { delete static_cast<NodeData*>(buffer); }

const char* type_name(TfLiteType t) {
  switch (t) {
    case kTfLiteFloat32: return "float32";
    case kTfLiteFloat16: return "float16";
    case kTfLiteInt8: return "int8";
    default: return "an unsupported type";
  }
}

TfLiteStatus fail(TfLiteContext* context, const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  context->ReportError(context, "edgeconv.tvconv delegate: %s\n", msg);
  return kTfLiteError;
}

int dim(const TfLiteTensor& t, int i) { return t.dims->data[i]; }

int64_t numel(const TfLiteTensor& t) {
  int64_t n = 1;
  for (int i = 0; i < t.dims->size; ++i) n *= t.dims->data[i];  // dims are checked >= 0
  return n;
}

bool dims_ok(const TfLiteTensor& t, int max_rank) {
  if (!t.dims || t.dims->size < 0 || t.dims->size > max_rank) return false;
  for (int i = 0; i < t.dims->size; ++i)
    if (t.dims->data[i] < 0) return false;
  return true;
}

// Validates the node's tensors against each other, k and the stride; sets the output size.
TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  auto* d = static_cast<NodeData*>(node->user_data);
  if (!d) return fail(context, "node data missing (init failed)");
  TfLiteTensor& x = context->tensors[d->in[0]];
  TfLiteTensor& w = context->tensors[d->in[1]];
  TfLiteTensor& sc = context->tensors[d->in[2]];
  TfLiteTensor& b = context->tensors[d->in[3]];
  TfLiteTensor& y = context->tensors[d->out];
  const int k = d->attrs.k, s = d->attrs.s, kk = k * k, p = k / 2;
  if (x.type != kTfLiteFloat32) return fail(context, "X must be float32, is %s", type_name(x.type));
  if (!dims_ok(x, 4) || x.dims->size != 4) return fail(context, "X must be NHWC (rank 4)");
  const int N = dim(x, 0), H = dim(x, 1), W = dim(x, 2), C = dim(x, 3);
  if (H < 1 || W < 1 || C < 1) return fail(context, "X has an empty spatial or channel dimension");
  const int h = (H + 2 * p - k) / s + 1, wo = (W + 2 * p - k) / s + 1;
  if (w.type != kTfLiteFloat32 && w.type != kTfLiteFloat16 && w.type != kTfLiteInt8)
    return fail(context, "W must be float32, float16 or int8, is %s", type_name(w.type));
  if (!dims_ok(w, 4) || w.dims->size != 4 || dim(w, 0) != h || dim(w, 1) != wo ||
      dim(w, 2) != kk || dim(w, 3) != C)
    return fail(context, "W must be (h, w, k*k, C) = (%d, %d, %d, %d) for X (%d, %d, %d, %d), "
                "kernel_size %d, stride %d", h, wo, kk, C, N, H, W, C, k, s);
  if (sc.type != kTfLiteFloat32 || !dims_ok(sc, 4) || numel(sc) != int64_t{kk} * C ||
      sc.dims->size < 1 || dim(sc, sc.dims->size - 1) != C)
    return fail(context, "scales must be float32 (k*k, C) = (%d, %d)", kk, C);
  if (b.type != kTfLiteFloat32 || !dims_ok(b, 4) || b.dims->size < 1 ||
      dim(b, b.dims->size - 1) != C)
    return fail(context, "bias must be float32 (C,) or (h, w, C)");
  if (numel(b) == C) d->bias_mode = edgeconv::kBiasChannel;
  else if (b.dims->size >= 3 && numel(b) == int64_t{h} * wo * C &&
           dim(b, b.dims->size - 3) == h && dim(b, b.dims->size - 2) == wo)
    d->bias_mode = edgeconv::kBiasPixel;
  else
    return fail(context, "bias must be (C,) = (%d,) or (h, w, C) = (%d, %d, %d)", C, h, wo, C);
  d->wtype = w.type == kTfLiteFloat16 ? edgeconv::kF16
           : w.type == kTfLiteInt8 ? edgeconv::kI8 : edgeconv::kF32;
  // the kernel's own checks (element counts) on the final geometry
  edgeconv::NhwcArgs a;
  a.x = a.y = reinterpret_cast<float*>(1);
  a.w = a.x;
  a.scales = a.x;
  a.N = N; a.C = C; a.H = H; a.W = W; a.k = k; a.s = s; a.wtype = d->wtype;
  if (const char* msg = edgeconv::prepare_nhwc_args(a)) return fail(context, "%s", msg);
  if (y.type != kTfLiteFloat32) return fail(context, "Y must be float32, is %s", type_name(y.type));
  const int want[4] = {N, h, wo, C};
  bool same = y.dims && y.dims->size == 4;
  for (int i = 0; same && i < 4; ++i) same = y.dims->data[i] == want[i];
  if (!same) {
    auto* dims = static_cast<TfLiteIntArray*>(std::malloc(sizeof(int) * 5));  // freed by TFLite
    if (!dims) return fail(context, "out of memory");
    dims->size = 4;
    for (int i = 0; i < 4; ++i) dims->data[i] = want[i];
    if (context->ResizeTensor(context, &y, dims) != kTfLiteOk)
      return fail(context, "could not resize the output to (%d, %d, %d, %d)", N, h, wo, C);
  }
  return kTfLiteOk;
}

struct EvalJob {
  edgeconv::NhwcArgs args;
  edgeconv::NhwcFn fn;
  int64_t tasks;
};

void eval_task(const void* ctx, int64_t t) {
  const auto* j = static_cast<const EvalJob*>(ctx);
  const int64_t h = j->args.h;
  j->fn(j->args, h * t / j->tasks, h * (t + 1) / j->tasks);
}

TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  auto* d = static_cast<NodeData*>(node->user_data);
  if (!d) return fail(context, "node data missing (init failed)");
  const TfLiteTensor& x = context->tensors[d->in[0]];
  const TfLiteTensor& w = context->tensors[d->in[1]];
  const TfLiteTensor& sc = context->tensors[d->in[2]];
  const TfLiteTensor& b = context->tensors[d->in[3]];
  TfLiteTensor& y = context->tensors[d->out];
  edgeconv::NhwcArgs a;
  a.N = dim(x, 0); a.H = dim(x, 1); a.W = dim(x, 2); a.C = dim(x, 3);
  a.k = d->attrs.k; a.s = d->attrs.s; a.act = d->attrs.act;
  a.wtype = d->wtype; a.bias_mode = d->bias_mode;
  a.x = x.data.f; a.y = y.data.f; a.w = w.data.data; a.scales = sc.data.f; a.bias = b.data.f;
  if (a.N == 0) return kTfLiteOk;
  if (const char* msg = edgeconv::prepare_nhwc_args(a)) return fail(context, "%s", msg);
  const int64_t nsc = int64_t{a.k} * a.k * a.C;
  // the buffers must hold what the shapes say (a tensor resized since Prepare, ...)
  const size_t wbytes = static_cast<size_t>(edgeconv::weight_bytes(a.wtype));
  const int64_t kk = int64_t{a.k} * a.k;
  const int64_t npix = a.bias_mode == edgeconv::kBiasPixel ? a.h * a.w_out : 1;
  if (x.bytes < static_cast<size_t>(a.N * a.H * a.W * a.C) * 4 ||
      y.bytes < static_cast<size_t>(a.N * a.h * a.w_out * a.C) * 4 ||
      w.bytes < static_cast<size_t>(a.h * a.w_out * kk * a.C) * wbytes ||
      sc.bytes < static_cast<size_t>(kk * a.C) * 4 || b.bytes < static_cast<size_t>(npix * a.C) * 4 ||
      !b.data.f || !sc.data.f)
    return fail(context, "tensor buffers do not match their shapes (not prepared?)");
  if (y.dims->size != 4 || y.dims->data[0] != a.N || y.dims->data[1] != a.h ||
      y.dims->data[2] != a.w_out || y.dims->data[3] != a.C)
    return fail(context, "output shape changed since Prepare");
  if (a.wtype != edgeconv::kI8 && sc.allocation_type == kTfLiteMmapRo) {  // constant scales
    if (d->scales_seen != a.scales) {
      d->scales_ones = true;
      for (int64_t i = 0; i < nsc && d->scales_ones; ++i) d->scales_ones = a.scales[i] == 1.0f;
      d->scales_seen = a.scales;
    }
    if (d->scales_ones) a.scales = nullptr;
  }
  EvalJob job{a, edgeconv::nhwc_fn(d->delegate->isa), 1};
  Pool* pool = d->delegate->get_pool(context->recommended_num_threads);
  const int64_t nt = pool->size();
  job.tasks = a.h < nt * 4 ? a.h : nt * 4;  // a few rows per task: balance, few wake-ups
  if (nt <= 1 || a.h <= 1) job.tasks = 1;
  pool->run(job.tasks, eval_task, &job);
  return kTfLiteOk;
}

TfLiteStatus delegate_prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  auto* self = reinterpret_cast<EdgeconvDelegate*>(delegate);
  TfLiteIntArray* plan = nullptr;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk || !plan) return kTfLiteError;
  std::vector<int> ours;
  for (int i = 0; i < plan->size; ++i) {
    TfLiteNode* node = nullptr;
    TVConvAttrs attrs;
    if (is_ours(context, plan->data[i], &node, &attrs)) ours.push_back(plan->data[i]);
  }
  if (ours.empty()) return kTfLiteOk;
  self->get_pool(context->recommended_num_threads);
  TfLiteRegistration reg;
  std::memset(&reg, 0, sizeof reg);
  reg.init = kernel_init;
  reg.free = kernel_free;
  reg.prepare = kernel_prepare;
  reg.invoke = kernel_invoke;
  reg.builtin_code = kTfLiteBuiltinDelegate;
  reg.custom_name = "EdgeconvTVConvDelegate";
  reg.version = 1;
  // one kernel per node (the plan's other indices stay valid across the calls)
  alignas(TfLiteIntArray) int storage[2];
  auto* one = reinterpret_cast<TfLiteIntArray*>(storage);
  for (int index : ours) {
    one->size = 1;
    one->data[0] = index;
    if (context->ReplaceNodeSubsetsWithDelegateKernels(context, reg, one, delegate) != kTfLiteOk)
      return kTfLiteError;
    self->claimed.fetch_add(1);
  }
  return kTfLiteOk;
}

void report(void (*report_error)(const char*), const std::string& msg) {
  if (report_error) report_error(("edgeconv litert delegate: " + msg).c_str());
}

}  // namespace

EDGECONV_EXPORT TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values,
                                                              size_t n,
                                                              void (*report_error)(const char*)) {
  const char* isa_req = std::getenv("EDGECONV_KERNEL_ISA");
  int threads = 0;
  if (n > 0 && (!keys || !values)) {
    report(report_error, "null option arrays");
    return nullptr;
  }
  for (size_t i = 0; i < n; ++i) {
    if (!keys[i] || !values[i]) {
      report(report_error, "null option key or value");
      return nullptr;
    }
    const std::string key = keys[i], val = values[i];
    if (key == "isa") {
      isa_req = values[i];
    } else if (key == "num_threads") {
      char* end = nullptr;
      errno = 0;
      const long v = std::strtol(values[i], &end, 10);
      if (val.empty() || *end != '\0' || errno != 0 || v < -1 || v > kMaxThreads) {
        report(report_error, "num_threads must be an integer in [-1, 256] (<= 0: the "
                             "interpreter's thread count), got '" + val + "'");
        return nullptr;
      }
      threads = v > 0 ? static_cast<int>(v) : 0;
    } else {
      report(report_error, "unknown option '" + key + "' (known: isa, num_threads)");
      return nullptr;
    }
  }
  const int isa = edgeconv::select_isa(isa_req);
  if (isa < 0) {
    report(report_error, std::string("ISA '") + (isa_req ? isa_req : "") +
                         "' is not available on this CPU/build (available: " +
                         edgeconv::available_isas() + ", or auto)");
    return nullptr;
  }
  auto* d = new (std::nothrow) EdgeconvDelegate();
  if (!d) {
    report(report_error, "out of memory");
    return nullptr;
  }
  std::memset(&d->base, 0, sizeof d->base);
  d->base.data_ = d;
  d->base.Prepare = delegate_prepare;
  d->base.flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  d->isa = isa;
  d->isa_name = edgeconv::isa_name(isa);
  d->threads_option = threads;
  {
    std::lock_guard<std::mutex> lk(g_live_mu);
    live_delegates().insert(d);
  }
  return &d->base;
}

EDGECONV_EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  EdgeconvDelegate* d = nullptr;
  {
    std::lock_guard<std::mutex> lk(g_live_mu);
    if (live_delegates().erase(delegate)) d = reinterpret_cast<EdgeconvDelegate*>(delegate);
  }
  delete d;  // joins the pool's workers
}

EDGECONV_EXPORT const char* edgeconv_litert_delegate_info() {
  return "edgeconv litert delegate " EDGECONV_KERNELS_VERSION " (composite edgeconv.tvconv, "
         "layout " EDGECONV_NHWC_LAYOUT ", kernel_version 1)";
}

EDGECONV_EXPORT const char* edgeconv_litert_available_isas() { return edgeconv::available_isas(); }

// Nodes this delegate claimed so far (all interpreters it was applied to); -1: not a live
// delegate of this library.
EDGECONV_EXPORT int edgeconv_litert_claimed_nodes(TfLiteDelegate* delegate) {
  EdgeconvDelegate* d = as_live(delegate);
  return d ? d->claimed.load() : -1;
}

// The ISA a delegate runs; for anything but a live delegate (nullptr, or a call without an
// argument) the ISA a new delegate would choose now ($EDGECONV_KERNEL_ISA or the best).
EDGECONV_EXPORT const char* edgeconv_litert_isa(TfLiteDelegate* delegate) {
  if (EdgeconvDelegate* d = as_live(delegate)) return d->isa_name.c_str();
  const int isa = edgeconv::select_isa(std::getenv("EDGECONV_KERNEL_ISA"));
  return isa < 0 ? "unavailable" : edgeconv::isa_name(isa);
}

EDGECONV_EXPORT const char* edgeconv_litert_version() { return EDGECONV_KERNELS_VERSION; }

// The attribute parser on its own (tests feed it hostile buffers): 1 and the fields if the
// buffer is a valid contract map, else 0.
EDGECONV_EXPORT int edgeconv_litert_parse_attrs(const uint8_t* data, size_t size, int* k, int* s,
                                                int* act) {
  TVConvAttrs a;
  if (!parse_attrs(data, size, &a)) return 0;
  if (k) *k = a.k;
  if (s) *s = a.s;
  if (act) *act = a.act;
  return 1;
}
