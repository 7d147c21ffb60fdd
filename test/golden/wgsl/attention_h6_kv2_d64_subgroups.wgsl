// twlac attention: heads=6,kvHeads=2,d=64,sg=true
enable subgroups;
struct Step { pos0: u32, ntok: u32, row0: u32, }
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> Kc: array<f32>;
@group(0) @binding(2) var<storage, read> Vc: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, 64>;
var<workgroup> sc: array<f32, 256>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32) {
  let h = wid.x;
  let m = wid.y;
  let kh = h / 3u;
  let last = step.pos0 + m;
  let qo = m * 384u + h * 64u;
  let scale = f32(1.250000000e-1);
  var mrun = -3.0e38;
  var lrun = 0.0;
  var acc: array<f32, 1>;
  for (var c0 = 0u; c0 <= last; c0 += 256u) {
    let cn = min(256u, last + 1u - c0);
    var cmax = -3.0e38;
    for (var t = lid; t < cn; t += 64u) {
      let ko = (c0 + t) * 128u + kh * 64u;
      var s = 0.0;
      for (var i = 0u; i < 64u; i++) { s += Q[qo + i] * Kc[ko + i]; }
      s *= scale;
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
    let mnew = max(mrun, red[0]);
    workgroupBarrier();
    var csum = 0.0;
    for (var t = lid; t < cn; t += 64u) { let p = exp(sc[t] - mnew); sc[t] = p; csum += p; }
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
    let alpha = exp(mrun - mnew);
    lrun = lrun * alpha + red[0];
    for (var di = 0u; di < 1u; di++) {
      let i = lid + di * 64u;
      if (i < 64u) {
        var s = acc[di] * alpha;
        for (var t = 0u; t < cn; t++) { s += sc[t] * Vc[(c0 + t) * 128u + kh * 64u + i]; }
        acc[di] = s;
      }
    }
    mrun = mnew;
    workgroupBarrier();
  }
  for (var di = 0u; di < 1u; di++) {
    let i = lid + di * 64u;
    if (i < 64u) { O[qo + i] = acc[di] / lrun; }
  }
}
