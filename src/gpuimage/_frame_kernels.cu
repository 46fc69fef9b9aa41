// gpuimage's frame kernel: colour conversion, crop, resize, letterbox, normalization and store of up to
// MAX_ITEMS regions (of video frames or packed images) into a batch, in one launch. _sampling.py defines
// what it computes; _frame_params.py packs its parameters, and _frame_kernels.py compiles it with NVRTC
// (through CuPy) once per variant, prepending the #defines that specialise it:
//   SRC_KIND (0 packed/GRAY, 1 Y + interleaved chroma plane, 2 Y, U, V planes), SRC_T (storage type of a
//   sample), LOAD(x) (a stored sample as a float), SRC_SHIFT (P010: 6), CHROMA_SHIFT_X/Y (log2 of the chroma subsampling), RESIZE (0 identity,
//   1 nearest, 2 bilinear), DST (0 float32, 1 float16, 2 bfloat16, 3 uint8), CHANNELS (3 or 4),
//   PIXELS (output pixels a thread: 4 without interpolation, else 1), MAX_ITEMS (the items Params holds:
//   1, 8 or 32, the smallest that fits, as the driver copies all of it at each launch), ITEM_BYTES and
//   PARAMS_BYTES (checked below against the host's struct layout).
// It is compiled with --fmad=false: every product and sum rounds once, as the float32 recipe says.
//
// One thread computes PIXELS output pixels of one row, all channels: x = blockIdx.x * 32 * PIXELS +
// threadIdx.x + 32 k (consecutive threads write consecutive pixels, so CHW stores are coalesced), y
// with 8 rows per block, z = the item. All parameters travel by value in one struct (no table in device memory to upload).

#define KIND_PACKED 0
#define KIND_SEMI_PLANAR 1
#define KIND_PLANAR 2
#define RESIZE_IDENTITY 0
#define RESIZE_NEAREST 1
#define RESIZE_BILINEAR 2
#define DST_FLOAT32 0
#define DST_FLOAT16 1
#define DST_BFLOAT16 2
#define DST_UINT8 3

// Every field at its natural alignment, no padding: the host packs the same bytes with struct.
struct Shared {
  unsigned long long dst;  // slot 0 of this launch
  long long dst_row, dst_pixel, dst_channel, item_pitch;  // bytes
  float matrix[9];  // YUV: rows = output colour channels, columns = codes read (Y, chroma 1, chroma 2)
  float offsets[3];  // YUV: subtracted from the codes before the matrix
  float code_scale;  // packed: value = code * code_scale (1/255, 1/65535 or 1)
  float factors[4], shifts[4], pad[4];  // out = value * factor + shift; pad already in output units
  int source_channel[4];  // packed: the source channel of each output channel; -1 gives 1.0 (alpha)
  int out_width, out_height, count;  // the slot's size; items in this launch
};

struct Item {
  unsigned long long plane[3];  // element (0, 0) of each plane of the whole frame
  long long row_pitch[3];  // bytes
  long long pixel_stride, channel_stride;  // packed sources: bytes (YUV planes are packed)
  double ratio_x, ratio_y;  // region / placement size, as the reference divides them (float64)
  int region_x, region_y, region_width, region_height;  // in luma pixels of the whole frame
  int place_x, place_y, place_width, place_height;  // in output pixels of the slot
};

struct Params {
  Shared shared;
  Item items[MAX_ITEMS];
};

static_assert(sizeof(Item) == ITEM_BYTES, "gpuimage: Item layout differs from _frame_params.ITEM");
static_assert(sizeof(Params) == PARAMS_BYTES, "gpuimage: Params layout differs from _frame_params");

// float16 and bfloat16 travel as their bits, as in _kernels.cu (no cuda_fp16.h at run time).
__device__ __forceinline__ float half_to_float(unsigned short bits) {
  float value;
  asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(bits));
  return value;
}
__device__ __forceinline__ float bfloat_to_float(unsigned short bits) {
  return __uint_as_float(((unsigned int)bits) << 16);
}
__device__ __forceinline__ unsigned short float_to_half(float value) {
  unsigned short bits;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));
  return bits;
}
__device__ __forceinline__ unsigned short float_to_bfloat(float value) {
  unsigned int bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round half to even
  return (unsigned short)(bits >> 16);
}

// The output's stored type and the encoding of one value into it.
#if DST == DST_FLOAT32
typedef float dst_t;
__device__ __forceinline__ float encode(float value) { return value; }
#elif DST == DST_FLOAT16
typedef unsigned short dst_t;
__device__ __forceinline__ unsigned short encode(float value) { return float_to_half(value); }
#elif DST == DST_BFLOAT16
typedef unsigned short dst_t;
__device__ __forceinline__ unsigned short encode(float value) { return float_to_bfloat(value); }
#else
typedef unsigned char dst_t;
// round half to even, saturate, NaN -> 0 (as _kernels.cu's saturate_float)
__device__ __forceinline__ unsigned char encode(float value) {
  if (value != value) return 0;
  const float rounded = rintf(value);
  return rounded <= 0.0f ? 0 : (rounded >= 255.0f ? 255 : (unsigned char)rounded);
}
#endif

__device__ __forceinline__ void store(unsigned char* at, float value) { *(dst_t*)at = encode(value); }

// Four consecutive elements in one vector store (``at`` aligned to 4 elements), a quarter of the
// store instructions, marked streaming (.cs: written once, not read back here), which keeps the
// output from evicting the frame's lines: both together take the unresized 4K path from 0.70 to 0.92
// of a device copy's bandwidth on an H200.
__device__ __forceinline__ void store4(unsigned char* at, const float value[4]) {
#if DST == DST_FLOAT32
  asm volatile("st.global.cs.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(at), "f"(value[0]), "f"(value[1]),
               "f"(value[2]), "f"(value[3]) : "memory");
#elif DST == DST_UINT8
  const unsigned int word = (unsigned int)encode(value[0]) | ((unsigned int)encode(value[1]) << 8) |
                            ((unsigned int)encode(value[2]) << 16) | ((unsigned int)encode(value[3]) << 24);
  asm volatile("st.global.cs.u32 [%0], %1;" ::"l"(at), "r"(word) : "memory");
#else
  const unsigned int low = (unsigned int)encode(value[0]) | ((unsigned int)encode(value[1]) << 16);
  const unsigned int high = (unsigned int)encode(value[2]) | ((unsigned int)encode(value[3]) << 16);
  asm volatile("st.global.cs.v2.u32 [%0], {%1, %2};" ::"l"(at), "r"(low), "r"(high) : "memory");
#endif
}

__device__ __forceinline__ float code_at(const unsigned char* at) {
#if SRC_SHIFT
  return LOAD(*(const SRC_T*)at >> SRC_SHIFT);  // P010: 10 significant bits in the high bits
#else
  return LOAD(*(const SRC_T*)at);
#endif
}

#if SRC_KIND != KIND_PACKED
// Step 1 for one YUV pixel: its three codes (luma, chroma 1, chroma 2) through the matrix, clipped.
__device__ __forceinline__ void yuv_values(const Shared& s, float luma, float first, float second,
                                           float value[CHANNELS]) {
  const float codes[3] = {luma - s.offsets[0], first - s.offsets[1], second - s.offsets[2]};
#pragma unroll
  for (int c = 0; c < 3; ++c) {
    const float v = s.matrix[3 * c] * codes[0] + s.matrix[3 * c + 1] * codes[1] + s.matrix[3 * c + 2] * codes[2];
    value[c] = fminf(fmaxf(v, 0.0f), 1.0f);  // NaN cannot arise from codes
  }
  if (CHANNELS == 4) value[CHANNELS - 1] = 1.0f;
}
#endif

// Step 1 of _sampling: the values of pixel (x, y) of the whole frame, in [0, 1] units.
__device__ __forceinline__ void pixel_values(const Shared& s, const Item& item, int x, int y,
                                             float value[CHANNELS]) {
  const unsigned char* luma = (const unsigned char*)item.plane[0] + (long long)y * item.row_pitch[0];
#if SRC_KIND == KIND_PACKED
  const unsigned char* pixel = luma + (long long)x * item.pixel_stride;
#pragma unroll
  for (int c = 0; c < CHANNELS; ++c) {
    const int from = s.source_channel[c];
    value[c] = from < 0 ? 1.0f : code_at(pixel + from * item.channel_stride) * s.code_scale;
  }
#else
  const int cx = x >> CHROMA_SHIFT_X, cy = y >> CHROMA_SHIFT_Y;
  const unsigned char* chroma = (const unsigned char*)item.plane[1] + (long long)cy * item.row_pitch[1];
#if SRC_KIND == KIND_SEMI_PLANAR
  const unsigned char* pair = chroma + (long long)cx * (2 * sizeof(SRC_T));
  const float first = code_at(pair), second = code_at(pair + sizeof(SRC_T));
#else
  const unsigned char* other = (const unsigned char*)item.plane[2] + (long long)cy * item.row_pitch[2];
  const float first = code_at(chroma + (long long)cx * sizeof(SRC_T));
  const float second = code_at(other + (long long)cx * sizeof(SRC_T));
#endif
  yuv_values(s, code_at(luma + (long long)x * sizeof(SRC_T)), first, second, value);
#endif
}

#if SRC_KIND == KIND_SEMI_PLANAR && CHROMA_SHIFT_X == 1 && RESIZE == RESIZE_IDENTITY && PIXELS == 4
// The code in bits [16 * index, 16 * index + 16) (uint16 samples) or [8 * index, ...) (uint8) of ``word``.
__device__ __forceinline__ float code_in(unsigned long long word, int index) {
  const SRC_T sample = (SRC_T)(word >> (8 * sizeof(SRC_T) * index));
#if SRC_SHIFT
  return LOAD(sample >> SRC_SHIFT);
#else
  return LOAD(sample);
#endif
}

// Step 1 for the 4 pixels (x .. x + 3, y), x even, of a 2:1-wide semi-planar frame, in two vector
// loads (4 luma samples, 2 chroma pairs) where both are aligned; false (nothing read) otherwise.
__device__ __forceinline__ bool four_values(const Shared& s, const Item& item, int x, int y,
                                            float value[4][CHANNELS]) {
  const unsigned char* luma = (const unsigned char*)item.plane[0] + (long long)y * item.row_pitch[0] +
                              (long long)x * sizeof(SRC_T);
  const unsigned char* chroma = (const unsigned char*)item.plane[1] +
                                (long long)(y >> CHROMA_SHIFT_Y) * item.row_pitch[1] +
                                (long long)(x >> 1) * (2 * sizeof(SRC_T));
  if ((x & 1) || (((unsigned long long)luma | (unsigned long long)chroma) % (4 * sizeof(SRC_T))))
    return false;
  unsigned long long samples, pairs;
  if (sizeof(SRC_T) == 1) {
    samples = *(const unsigned int*)luma, pairs = *(const unsigned int*)chroma;
  } else {
    const uint2 luma_words = *(const uint2*)luma, chroma_words = *(const uint2*)chroma;
    samples = luma_words.x | ((unsigned long long)luma_words.y << 32);
    pairs = chroma_words.x | ((unsigned long long)chroma_words.y << 32);
  }
#pragma unroll
  for (int k = 0; k < 4; ++k)
    yuv_values(s, code_in(samples, k), code_in(pairs, 2 * (k >> 1)), code_in(pairs, 2 * (k >> 1) + 1), value[k]);
  return true;
}
#endif

#if RESIZE == RESIZE_BILINEAR
// Step 3, one axis: OpenCV's INTER_LINEAR with half-pixel centres, in float64 as the reference.
__device__ __forceinline__ void linear_taps(int d, double ratio, int length, int& first, int& second,
                                            float& weight) {
  const double position = ((double)d + 0.5) * ratio - 0.5;
  const double index = floor(position);
  first = (int)index;
  double w = position - index;
  if (first < 0) { first = 0; w = 0.0; }
  if (first >= length - 1) { first = length - 1; w = 0.0; }
  second = min(first + 1, length - 1);
  weight = (float)w;
}
#elif RESIZE == RESIZE_NEAREST
// INTER_NEAREST_EXACT: min(floor((d + 0.5) * ratio), length - 1).
__device__ __forceinline__ int nearest_tap(int d, double ratio, int length) {
  return min((int)floor(((double)d + 0.5) * ratio), length - 1);
}
#endif

extern "C" __global__ void __launch_bounds__(256) gpuimage_frames(const __grid_constant__ Params params) {
  const Shared& s = params.shared;
  const int oy = blockIdx.y * blockDim.y + threadIdx.y;
  if (oy >= s.out_height || (int)blockIdx.z >= s.count) return;
  const Item& item = params.items[blockIdx.z];
#if RESIZE == RESIZE_IDENTITY && PIXELS == 4
  // a planar slot whose rows, planes and items start at 4-element boundaries: each thread's pixels
  // are consecutive and go out in one vector store per channel
  const bool vector = s.dst_pixel == (long long)sizeof(dst_t) &&
                      ((s.dst | (unsigned long long)(s.dst_row | s.dst_channel | s.item_pitch)) %
                       (4 * sizeof(dst_t))) == 0;
#else
  const bool vector = false;
#endif
  // else PIXELS output pixels of this row, blockDim.x apart: a warp writes consecutive elements each time
  const int first_x = vector ? (int)(blockIdx.x * blockDim.x + threadIdx.x) * PIXELS
                             : (int)(blockIdx.x * blockDim.x * PIXELS + threadIdx.x);
  const int step = vector ? 1 : (int)blockDim.x;
  unsigned char* row = (unsigned char*)s.dst + (long long)blockIdx.z * s.item_pitch + (long long)oy * s.dst_row;
  const int dy = oy - item.place_y;
  const bool row_inside = dy >= 0 && dy < item.place_height;  // step 4: rows outside are letterbox
  float value[PIXELS][CHANNELS];
  bool inside[PIXELS];
  bool loaded = false;
#if SRC_KIND == KIND_SEMI_PLANAR && CHROMA_SHIFT_X == 1 && RESIZE == RESIZE_IDENTITY && PIXELS == 4
  if (vector && row_inside && first_x - item.place_x >= 0 && first_x + 3 < s.out_width &&
      first_x + 3 - item.place_x < item.place_width) {
    loaded = four_values(s, item, item.region_x + first_x - item.place_x, item.region_y + dy, value);
    for (int k = 0; k < 4; ++k) inside[k] = loaded;
  }
#endif
  // every read first, then every store: the loads of all PIXELS pixels are in flight together
#pragma unroll
  for (int k = 0; k < PIXELS && !loaded; ++k) {
    const int ox = first_x + k * step;
    const int dx = ox - item.place_x;
    inside[k] = row_inside && ox < s.out_width && dx >= 0 && dx < item.place_width;
    if (!inside[k]) continue;
#if RESIZE == RESIZE_IDENTITY
    pixel_values(s, item, item.region_x + dx, item.region_y + dy, value[k]);
#elif RESIZE == RESIZE_NEAREST
    pixel_values(s, item, item.region_x + nearest_tap(dx, item.ratio_x, item.region_width),
                 item.region_y + nearest_tap(dy, item.ratio_y, item.region_height), value[k]);
#else
    int x0, x1, y0, y1;
    float fx, fy;
    linear_taps(dx, item.ratio_x, item.region_width, x0, x1, fx);
    linear_taps(dy, item.ratio_y, item.region_height, y0, y1, fy);
    x0 += item.region_x, x1 += item.region_x, y0 += item.region_y, y1 += item.region_y;
    float v00[CHANNELS], v01[CHANNELS], v10[CHANNELS], v11[CHANNELS];
    pixel_values(s, item, x0, y0, v00);
    pixel_values(s, item, x1, y0, v01);
    pixel_values(s, item, x0, y1, v10);
    pixel_values(s, item, x1, y1, v11);
#pragma unroll
    for (int c = 0; c < CHANNELS; ++c) {
      const float top = (1.0f - fx) * v00[c] + fx * v01[c];
      const float bottom = (1.0f - fx) * v10[c] + fx * v11[c];
      value[k][c] = (1.0f - fy) * top + fy * bottom;
    }
#endif
  }
#if PIXELS == 4
  if (vector && first_x + 3 < s.out_width) {
    unsigned char* out = row + (long long)first_x * s.dst_pixel;
#pragma unroll
    for (int c = 0; c < CHANNELS; ++c) {
      float quad[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) quad[k] = inside[k] ? value[k][c] * s.factors[c] + s.shifts[c] : s.pad[c];
      store4(out + c * s.dst_channel, quad);
    }
    return;
  }
#endif
#pragma unroll
  for (int k = 0; k < PIXELS; ++k) {
    const int ox = first_x + k * step;
    if (ox >= s.out_width) continue;
    unsigned char* out = row + (long long)ox * s.dst_pixel;
#pragma unroll
    for (int c = 0; c < CHANNELS; ++c)
      store(out + c * s.dst_channel, inside[k] ? value[k][c] * s.factors[c] + s.shifts[c] : s.pad[c]);
  }
}
