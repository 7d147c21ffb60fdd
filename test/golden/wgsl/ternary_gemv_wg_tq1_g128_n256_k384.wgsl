// twlac ternary_gemv_wg_trit5: fmt=tq1_g128,N=256,K=384,bias=false,WG=64,sg=false
struct Step { pos0: u32, ntok: u32, row0: u32, }
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
var<workgroup> red: array<f32, 64>;
fn half_at(word0: u32, i: u32) -> f32 { return unpack2x16float(W[word0 + (i >> 1u)])[i & 1u]; }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = wid.x + wid.z * 32768u;
  let m = wid.y;
  if (n >= 256u || m >= step.ntok) { return; }
  let xr = m * 384u;
  let gr = n * 3u;
  let rb = n * 78u;
  let w1 = (rb + 81u) >> 2u;
  var acc = 0.0;
  for (var w = (rb >> 2u) + lid; w < w1; w += 64u) {
    let word = W[w];
    let wb = w * 4u;
    {
      let bi = wb + 0u - rb;
      let c = (word >> 0u) & 0xffu;
      let g = min(bi / 26u, 2u);
      let j = bi - g * 26u;
      let k0 = g * 128u + j * 5u;
      let v = select(0u, min(min(5u, 128u - min(j * 5u, 128u)), 384u - k0), k0 < 384u);
      var d = 0.0;
      var e = 0.0;
      { let xv = select(0.0, X[xr + min(k0 + 0u, 383u)], 0u < v); d += (f32((c / 1u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 1u, 383u)], 1u < v); d += (f32((c / 3u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 2u, 383u)], 2u < v); d += (f32((c / 9u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 3u, 383u)], 3u < v); d += (f32((c / 27u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 4u, 383u)], 4u < v); d += (f32((c / 81u) % 3u) - 1.0) * xv; e += xv; }
      acc += half_at(4992u, gr + g) * d + half_at(5376u, gr + g) * e;
    }
    {
      let bi = wb + 1u - rb;
      let c = (word >> 8u) & 0xffu;
      let g = min(bi / 26u, 2u);
      let j = bi - g * 26u;
      let k0 = g * 128u + j * 5u;
      let v = select(0u, min(min(5u, 128u - min(j * 5u, 128u)), 384u - k0), k0 < 384u);
      var d = 0.0;
      var e = 0.0;
      { let xv = select(0.0, X[xr + min(k0 + 0u, 383u)], 0u < v); d += (f32((c / 1u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 1u, 383u)], 1u < v); d += (f32((c / 3u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 2u, 383u)], 2u < v); d += (f32((c / 9u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 3u, 383u)], 3u < v); d += (f32((c / 27u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 4u, 383u)], 4u < v); d += (f32((c / 81u) % 3u) - 1.0) * xv; e += xv; }
      acc += half_at(4992u, gr + g) * d + half_at(5376u, gr + g) * e;
    }
    {
      let bi = wb + 2u - rb;
      let c = (word >> 16u) & 0xffu;
      let g = min(bi / 26u, 2u);
      let j = bi - g * 26u;
      let k0 = g * 128u + j * 5u;
      let v = select(0u, min(min(5u, 128u - min(j * 5u, 128u)), 384u - k0), k0 < 384u);
      var d = 0.0;
      var e = 0.0;
      { let xv = select(0.0, X[xr + min(k0 + 0u, 383u)], 0u < v); d += (f32((c / 1u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 1u, 383u)], 1u < v); d += (f32((c / 3u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 2u, 383u)], 2u < v); d += (f32((c / 9u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 3u, 383u)], 3u < v); d += (f32((c / 27u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 4u, 383u)], 4u < v); d += (f32((c / 81u) % 3u) - 1.0) * xv; e += xv; }
      acc += half_at(4992u, gr + g) * d + half_at(5376u, gr + g) * e;
    }
    {
      let bi = wb + 3u - rb;
      let c = (word >> 24u) & 0xffu;
      let g = min(bi / 26u, 2u);
      let j = bi - g * 26u;
      let k0 = g * 128u + j * 5u;
      let v = select(0u, min(min(5u, 128u - min(j * 5u, 128u)), 384u - k0), k0 < 384u);
      var d = 0.0;
      var e = 0.0;
      { let xv = select(0.0, X[xr + min(k0 + 0u, 383u)], 0u < v); d += (f32((c / 1u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 1u, 383u)], 1u < v); d += (f32((c / 3u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 2u, 383u)], 2u < v); d += (f32((c / 9u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 3u, 383u)], 3u < v); d += (f32((c / 27u) % 3u) - 1.0) * xv; e += xv; }
      { let xv = select(0.0, X[xr + min(k0 + 4u, 383u)], 4u < v); d += (f32((c / 81u) % 3u) - 1.0) * xv; e += xv; }
      acc += half_at(4992u, gr + g) * d + half_at(5376u, gr + g) * e;
    }
  }
  red[lid] = acc;
  workgroupBarrier();
  if (lid < 32u) { red[lid] += red[lid + 32u]; }
  workgroupBarrier();
  if (lid < 16u) { red[lid] += red[lid + 16u]; }
  workgroupBarrier();
  if (lid < 8u) { red[lid] += red[lid + 8u]; }
  workgroupBarrier();
  if (lid < 4u) { red[lid] += red[lid + 4u]; }
  workgroupBarrier();
  if (lid < 2u) { red[lid] += red[lid + 2u]; }
  workgroupBarrier();
  if (lid < 1u) { red[lid] += red[lid + 1u]; }
  workgroupBarrier();
  if (lid == 0u) {
    Y[m * 256u + n] = red[0];
  }
}
