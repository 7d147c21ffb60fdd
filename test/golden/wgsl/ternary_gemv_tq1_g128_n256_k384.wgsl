// twlac ternary_linear_trit5: fmt=tq1_g128,N=256,K=384,TM=1,bias=false,sg=false
struct Step { pos0: u32, ntok: u32, row0: u32, }
@group(0) @binding(3) var<uniform> step: Step;
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
fn half_at(word0: u32, i: u32) -> f32 { return unpack2x16float(W[word0 + (i >> 1u)])[i & 1u]; }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = wid.x * 64u + lid;
  let m0 = wid.y * 1u;
  if (n >= 256u || m0 >= step.ntok) { return; }
  let mcount = min(1u, step.ntok - m0);
  var acc: array<f32, 1>;
  for (var g = 0u; g < 3u; g++) {
    var st = array<f32, 1>();
    var sx = array<f32, 1>();
    let r0 = (n * 3u + g) * 26u;
    for (var j = 0u; j < 25u; j++) {
      let byte = (W[(r0 + j) >> 2u] >> (((r0 + j) & 3u) * 8u)) & 0xffu;
      for (var mm = 0u; mm < mcount; mm++) {
        let xk = (m0 + mm) * 384u + g * 128u + j * 5u;
        var d = 0.0;
        var e = 0.0;
        d += (f32((byte / 1u) % 3u) - 1.0) * X[xk + 0u]; e += X[xk + 0u];
        d += (f32((byte / 3u) % 3u) - 1.0) * X[xk + 1u]; e += X[xk + 1u];
        d += (f32((byte / 9u) % 3u) - 1.0) * X[xk + 2u]; e += X[xk + 2u];
        d += (f32((byte / 27u) % 3u) - 1.0) * X[xk + 3u]; e += X[xk + 3u];
        d += (f32((byte / 81u) % 3u) - 1.0) * X[xk + 4u]; e += X[xk + 4u];
        st[mm] += d;
        sx[mm] += e;
      }
    }
    {
      let byte = (W[(r0 + 25u) >> 2u] >> (((r0 + 25u) & 3u) * 8u)) & 0xffu;
      for (var mm = 0u; mm < mcount; mm++) {
        let xk = (m0 + mm) * 384u + g * 128u + 25u * 5u;
        var d = 0.0;
        var e = 0.0;
        d += (f32((byte / 1u) % 3u) - 1.0) * X[xk + 0u]; e += X[xk + 0u];
        d += (f32((byte / 3u) % 3u) - 1.0) * X[xk + 1u]; e += X[xk + 1u];
        d += (f32((byte / 9u) % 3u) - 1.0) * X[xk + 2u]; e += X[xk + 2u];
        st[mm] += d;
        sx[mm] += e;
      }
    }
    let s = half_at(4992u, n * 3u + g);
    let z = half_at(5376u, n * 3u + g);
    for (var mm = 0u; mm < mcount; mm++) { acc[mm] += s * st[mm] + z * sx[mm]; }
  }
  for (var g = 3u; g < 3u; g++) {
    var st = array<f32, 1>();
    var sx = array<f32, 1>();
    for (var j = 0u; j < 26u; j++) {
      let bi = (n * 3u + g) * 26u + j;
      let byte = (W[bi >> 2u] >> ((bi & 3u) * 8u)) & 0xffu;
      let k0 = g * 128u + j * 5u;
      let valid = min(min(5u, 128u - j * 5u), select(0u, 384u - k0, k0 < 384u));
      let t0 = (f32((byte / 1u) % 3u) - 1.0);
      let t1 = (f32((byte / 3u) % 3u) - 1.0);
      let t2 = (f32((byte / 9u) % 3u) - 1.0);
      let t3 = (f32((byte / 27u) % 3u) - 1.0);
      let t4 = (f32((byte / 81u) % 3u) - 1.0);
      for (var mm = 0u; mm < mcount; mm++) {
        let xrow = (m0 + mm) * 384u;
        if (0u < valid) { let xv = X[xrow + k0 + 0u]; st[mm] += t0 * xv; sx[mm] += xv; }
        if (1u < valid) { let xv = X[xrow + k0 + 1u]; st[mm] += t1 * xv; sx[mm] += xv; }
        if (2u < valid) { let xv = X[xrow + k0 + 2u]; st[mm] += t2 * xv; sx[mm] += xv; }
        if (3u < valid) { let xv = X[xrow + k0 + 3u]; st[mm] += t3 * xv; sx[mm] += xv; }
        if (4u < valid) { let xv = X[xrow + k0 + 4u]; st[mm] += t4 * xv; sx[mm] += xv; }
      }
    }
    let s = half_at(4992u, n * 3u + g);
    let z = half_at(5376u, n * 3u + g);
    for (var mm = 0u; mm < mcount; mm++) { acc[mm] += s * st[mm] + z * sx[mm]; }
  }
  for (var mm = 0u; mm < mcount; mm++) {
    Y[(m0 + mm) * 256u + n] = acc[mm];
  }
}
