// twlac attention_partial: heads=6,kvHeads=2,d=64,splits=4,sg=true
enable subgroups;
struct Step { pos0: u32, ntok: u32, row0: u32, }
@group(0) @binding(6) var<uniform> step: Step;
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> Kc: array<f32>;
@group(0) @binding(2) var<storage, read> Vc: array<f32>;
@group(0) @binding(3) var<storage, read_write> PM: array<f32>;
@group(0) @binding(4) var<storage, read_write> PL: array<f32>;
@group(0) @binding(5) var<storage, read_write> PA: array<f32>;
var<workgroup> red: array<f32, 256>;
var<workgroup> sc: array<f32, 64u>;
var<workgroup> qs: array<f32, 64u>;
var<workgroup> part: array<f32, 256u>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32) {
  let h = wid.x;
  let m = wid.y;
  let sp = wid.z;
  if (m >= step.ntok) { return; }
  let kh = h / 3u;
  let last = step.pos0 + m;
  let lo = 0u;
  let c0 = max(sp * 64u, lo);
  let c1 = min(sp * 64u + 64u, last + 1u);
  let slot = (m * 6u + h) * 4u + sp;
  if (c0 >= c1) {
    if (lid == 0u) { PM[slot] = -3.0e38; PL[slot] = 0.0; }
    for (var i = lid; i < 64u; i += 256u) { PA[slot * 64u + i] = 0.0; }
    return;
  }
  let qo = m * 384u + h * 64u;
  for (var i = lid; i < 64u; i += 256u) { qs[i] = Q[qo + i] * f32(1.250000000e-1); }
  workgroupBarrier();
  let cn = c1 - c0;
  // scores: TPP threads a position, the dims strided between them (neighbours read neighbouring floats)
  {
    let p = lid / 4u;
    let tp = lid % 4u;
    var s = 0.0;
    if (p < cn) {
      let ko = (c0 + p) * 128u + kh * 64u;
      for (var i = tp; i < 64u; i += 4u) { s += qs[i] * Kc[ko + i]; }
    }
    part[lid] = s;
  }
  workgroupBarrier();
  var cmax = -3.0e38;
  if (lid < cn) {
    var s = 0.0;
    for (var j = 0u; j < 4u; j++) { s += part[lid * 4u + j]; }
    sc[lid] = s;
    cmax = s;
  }
  for (var ri = 0u; ri < 1u; ri++) {
    let sv = subgroupMax(cmax);
    if (sg_lane == 0u) { red[ri * 256u + lid / sg_size] = sv; }
  }
  workgroupBarrier();
  if (lid < 1u) {
    var tot = red[lid * 256u];
    for (var si = 1u; si < 256u / sg_size; si++) { tot = max(tot, red[lid * 256u + si]); }
    red[lid * 256u] = tot;
  }
  workgroupBarrier();
  let mx = red[0];
  workgroupBarrier();
  var csum = 0.0;
  if (lid < cn) { let e = exp(sc[lid] - mx); sc[lid] = e; csum = e; }
  for (var ri = 0u; ri < 1u; ri++) {
    let sv = subgroupAdd(csum);
    if (sg_lane == 0u) { red[ri * 256u + lid / sg_size] = sv; }
  }
  workgroupBarrier();
  if (lid < 1u) {
    var tot = red[lid * 256u];
    for (var si = 1u; si < 256u / sg_size; si++) { tot = tot + red[lid * 256u + si]; }
    red[lid * 256u] = tot;
  }
  workgroupBarrier();
  if (lid == 0u) { PM[slot] = mx; PL[slot] = red[0]; }
  // Σ e·v: a thread a dim, PG groups of positions, then the groups added
  {
    let i = lid % 64u;
    let g = lid / 64u;
    if (g < 4u) {
      var a = 0.0;
      for (var t = g; t < cn; t += 4u) { a += sc[t] * Vc[(c0 + t) * 128u + kh * 64u + i]; }
      part[g * 64u + i] = a;
    }
  }
  workgroupBarrier();
  if (lid < 64u) {
    var a = 0.0;
    for (var g = 0u; g < 4u; g++) { a += part[g * 64u + lid]; }
    PA[slot * 64u + lid] = a;
  }
}
