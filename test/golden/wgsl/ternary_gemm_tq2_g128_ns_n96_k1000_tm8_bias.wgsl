// twlac ternary_linear_bit2: fmt=tq2_g128_ns,N=96,K=1000,TM=8,bias=true,sg=false
struct Step { pos0: u32, ntok: u32, row0: u32, }
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
fn half_at(word0: u32, i: u32) -> f32 { return unpack2x16float(W[word0 + (i >> 1u)])[i & 1u]; }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = wid.x * 64u + lid;
  let m0 = wid.y * 8u;
  if (n >= 96u || m0 >= step.ntok) { return; }
  let mcount = min(8u, step.ntok - m0);
  var acc: array<f32, 8>;
  for (var g = 0u; g < 7u; g++) {
    var st = array<f32, 8>();
    
    let w0 = ((n * 8u + g) * 32u) >> 2u;
    for (var j = 0u; j < 8u; j++) {
      let word = W[w0 + j];
      let b0 = (word >> 0u) & 0xffu;
      let b1 = (word >> 8u) & 0xffu;
      let b2 = (word >> 16u) & 0xffu;
      let b3 = (word >> 24u) & 0xffu;
      for (var mm = 0u; mm < mcount; mm++) {
        let xk = (m0 + mm) * 1000u + g * 128u + j * 16u;
        var d = 0.0;
        
        d += (f32((b0 >> 0u) & 3u) - 2.0) * X[xk + 0u];
        d += (f32((b0 >> 2u) & 3u) - 2.0) * X[xk + 1u];
        d += (f32((b0 >> 4u) & 3u) - 2.0) * X[xk + 2u];
        d += (f32((b0 >> 6u) & 3u) - 2.0) * X[xk + 3u];
        d += (f32((b1 >> 0u) & 3u) - 2.0) * X[xk + 4u];
        d += (f32((b1 >> 2u) & 3u) - 2.0) * X[xk + 5u];
        d += (f32((b1 >> 4u) & 3u) - 2.0) * X[xk + 6u];
        d += (f32((b1 >> 6u) & 3u) - 2.0) * X[xk + 7u];
        d += (f32((b2 >> 0u) & 3u) - 2.0) * X[xk + 8u];
        d += (f32((b2 >> 2u) & 3u) - 2.0) * X[xk + 9u];
        d += (f32((b2 >> 4u) & 3u) - 2.0) * X[xk + 10u];
        d += (f32((b2 >> 6u) & 3u) - 2.0) * X[xk + 11u];
        d += (f32((b3 >> 0u) & 3u) - 2.0) * X[xk + 12u];
        d += (f32((b3 >> 2u) & 3u) - 2.0) * X[xk + 13u];
        d += (f32((b3 >> 4u) & 3u) - 2.0) * X[xk + 14u];
        d += (f32((b3 >> 6u) & 3u) - 2.0) * X[xk + 15u];

        st[mm] += d;
        
      }
    }
    let s = half_at(6144u, n * 8u + g);
    
    for (var mm = 0u; mm < mcount; mm++) { acc[mm] += s * st[mm]; }
  }
  for (var g = 7u; g < 8u; g++) {
    var st = array<f32, 8>();
    
    for (var j = 0u; j < 32u; j++) {
      let bi = (n * 8u + g) * 32u + j;
      let byte = (W[bi >> 2u] >> ((bi & 3u) * 8u)) & 0xffu;
      let k0 = g * 128u + j * 4u;
      let valid = min(min(4u, 128u - j * 4u), select(0u, 1000u - k0, k0 < 1000u));
      let t0 = (f32((byte >> 0u) & 3u) - 2.0);
      let t1 = (f32((byte >> 2u) & 3u) - 2.0);
      let t2 = (f32((byte >> 4u) & 3u) - 2.0);
      let t3 = (f32((byte >> 6u) & 3u) - 2.0);
      for (var mm = 0u; mm < mcount; mm++) {
        let xrow = (m0 + mm) * 1000u;
        if (0u < valid) { let xv = X[xrow + k0 + 0u]; st[mm] += t0 * xv; }
        if (1u < valid) { let xv = X[xrow + k0 + 1u]; st[mm] += t1 * xv; }
        if (2u < valid) { let xv = X[xrow + k0 + 2u]; st[mm] += t2 * xv; }
        if (3u < valid) { let xv = X[xrow + k0 + 3u]; st[mm] += t3 * xv; }
      }
    }
    let s = half_at(6144u, n * 8u + g);
    
    for (var mm = 0u; mm < mcount; mm++) { acc[mm] += s * st[mm]; }
  }
  for (var mm = 0u; mm < mcount; mm++) {
    Y[(m0 + mm) * 96u + n] = acc[mm] + bias[n];
  }
}
