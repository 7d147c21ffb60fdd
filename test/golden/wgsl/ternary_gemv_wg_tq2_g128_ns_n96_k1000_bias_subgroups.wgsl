// twlac ternary_gemv_wg_bit2: fmt=tq2_g128_ns,N=96,K=1000,bias=true,WG=64,sg=true
enable subgroups;
struct Step { pos0: u32, ntok: u32, row0: u32, }
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
var<workgroup> red: array<f32, 64>;
fn half_at(word0: u32, i: u32) -> f32 { return unpack2x16float(W[word0 + (i >> 1u)])[i & 1u]; }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32) {
  let n = wid.x + wid.z * 32768u;
  let m = wid.y;
  if (n >= 96u || m >= step.ntok) { return; }
  let xr = m * 1000u;
  let gr = n * 8u;
  let rb = n * 256u;
  let w1 = (rb + 259u) >> 2u;
  var acc = 0.0;
  for (var w = (rb >> 2u) + lid; w < w1; w += 64u) {
    let word = W[w];
    let wb = w * 4u;
    {
      let bi = wb + 0u - rb;
      let c = (word >> 0u) & 0xffu;
      let g = min(bi / 32u, 7u);
      let j = bi - g * 32u;
      let k0 = g * 128u + j * 4u;
      let v = select(0u, min(min(4u, 128u - min(j * 4u, 128u)), 1000u - k0), k0 < 1000u);
      var d = 0.0;
      
      { let xv = select(0.0, X[xr + min(k0 + 0u, 999u)], 0u < v); d += (f32((c >> 0u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 1u, 999u)], 1u < v); d += (f32((c >> 2u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 2u, 999u)], 2u < v); d += (f32((c >> 4u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 3u, 999u)], 3u < v); d += (f32((c >> 6u) & 3u) - 2.0) * xv; }
      acc += half_at(6144u, gr + g) * d;
    }
    {
      let bi = wb + 1u - rb;
      let c = (word >> 8u) & 0xffu;
      let g = min(bi / 32u, 7u);
      let j = bi - g * 32u;
      let k0 = g * 128u + j * 4u;
      let v = select(0u, min(min(4u, 128u - min(j * 4u, 128u)), 1000u - k0), k0 < 1000u);
      var d = 0.0;
      
      { let xv = select(0.0, X[xr + min(k0 + 0u, 999u)], 0u < v); d += (f32((c >> 0u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 1u, 999u)], 1u < v); d += (f32((c >> 2u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 2u, 999u)], 2u < v); d += (f32((c >> 4u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 3u, 999u)], 3u < v); d += (f32((c >> 6u) & 3u) - 2.0) * xv; }
      acc += half_at(6144u, gr + g) * d;
    }
    {
      let bi = wb + 2u - rb;
      let c = (word >> 16u) & 0xffu;
      let g = min(bi / 32u, 7u);
      let j = bi - g * 32u;
      let k0 = g * 128u + j * 4u;
      let v = select(0u, min(min(4u, 128u - min(j * 4u, 128u)), 1000u - k0), k0 < 1000u);
      var d = 0.0;
      
      { let xv = select(0.0, X[xr + min(k0 + 0u, 999u)], 0u < v); d += (f32((c >> 0u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 1u, 999u)], 1u < v); d += (f32((c >> 2u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 2u, 999u)], 2u < v); d += (f32((c >> 4u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 3u, 999u)], 3u < v); d += (f32((c >> 6u) & 3u) - 2.0) * xv; }
      acc += half_at(6144u, gr + g) * d;
    }
    {
      let bi = wb + 3u - rb;
      let c = (word >> 24u) & 0xffu;
      let g = min(bi / 32u, 7u);
      let j = bi - g * 32u;
      let k0 = g * 128u + j * 4u;
      let v = select(0u, min(min(4u, 128u - min(j * 4u, 128u)), 1000u - k0), k0 < 1000u);
      var d = 0.0;
      
      { let xv = select(0.0, X[xr + min(k0 + 0u, 999u)], 0u < v); d += (f32((c >> 0u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 1u, 999u)], 1u < v); d += (f32((c >> 2u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 2u, 999u)], 2u < v); d += (f32((c >> 4u) & 3u) - 2.0) * xv; }
      { let xv = select(0.0, X[xr + min(k0 + 3u, 999u)], 3u < v); d += (f32((c >> 6u) & 3u) - 2.0) * xv; }
      acc += half_at(6144u, gr + g) * d;
    }
  }
  let sv = subgroupAdd(acc);
  if (sg_lane == 0u) { red[lid / sg_size] = sv; }
  workgroupBarrier();
  if (lid == 0u) {
    var tot = 0.0;
    for (var si = 0u; si < (64u + sg_size - 1u) / sg_size; si++) { tot += red[si]; }
    Y[m * 96u + n] = tot + bias[n];
  }
}
