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
var<workgroup> red: array<f32, 64>;
var<workgroup> sc: array<f32, 64u>;
var<workgroup> qs: array<f32, 64u>;
@compute @workgroup_size(64)
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
    for (var i = lid; i < 64u; i += 64u) { PA[slot * 64u + i] = 0.0; }
    return;
  }
  let qo = m * 384u + h * 64u;
  for (var i = lid; i < 64u; i += 64u) { qs[i] = Q[qo + i] * f32(1.250000000e-1); }
  workgroupBarrier();
  let cn = c1 - c0;
  var cmax = -3.0e38;
  for (var t = lid; t < cn; t += 64u) {
    let ko = (c0 + t) * 128u + kh * 64u;
    var s = 0.0;
    for (var i = 0u; i < 64u; i += 4u) {
      s += dot(vec4<f32>(qs[i], qs[i + 1u], qs[i + 2u], qs[i + 3u]), vec4<f32>(Kc[ko + i], Kc[ko + i + 1u], Kc[ko + i + 2u], Kc[ko + i + 3u]));
    }
    sc[t] = s;
    cmax = max(cmax, s);
  }
  for (var ri = 0u; ri < 1u; ri++) {
    let sv = subgroupMax(cmax);
    if (sg_lane == 0u) { red[ri * 64u + lid / sg_size] = sv; }
  }
  workgroupBarrier();
  if (lid < 1u) {
    var tot = red[lid * 64u];
    for (var si = 1u; si < 64u / sg_size; si++) { tot = max(tot, red[lid * 64u + si]); }
    red[lid * 64u] = tot;
  }
  workgroupBarrier();
  let mx = red[0];
  workgroupBarrier();
  var csum = 0.0;
  for (var t = lid; t < cn; t += 64u) { let p = exp(sc[t] - mx); sc[t] = p; csum += p; }
  for (var ri = 0u; ri < 1u; ri++) {
    let sv = subgroupAdd(csum);
    if (sg_lane == 0u) { red[ri * 64u + lid / sg_size] = sv; }
  }
  workgroupBarrier();
  if (lid < 1u) {
    var tot = red[lid * 64u];
    for (var si = 1u; si < 64u / sg_size; si++) { tot = tot + red[lid * 64u + si]; }
    red[lid * 64u] = tot;
  }
  workgroupBarrier();
  if (lid == 0u) { PM[slot] = mx; PL[slot] = red[0]; }
  for (var di = 0u; di < 1u; di++) {
    let i = lid + di * 64u;
    if (i < 64u) {
      var a = 0.0;
      for (var t = 0u; t < cn; t++) { a += sc[t] * Vc[(c0 + t) * 128u + kh * 64u + i]; }
      PA[slot * 64u + i] = a;
    }
  }
}
