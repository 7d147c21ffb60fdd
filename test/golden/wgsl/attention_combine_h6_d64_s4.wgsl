// twlac attention_combine: heads=6,d=64,splits=4,sg=false
struct Step { pos0: u32, ntok: u32, row0: u32, }
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(0) var<storage, read> PM: array<f32>;
@group(0) @binding(1) var<storage, read> PL: array<f32>;
@group(0) @binding(2) var<storage, read> PA: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> red: array<f32, 256>;
var<workgroup> part: array<f32, 256u>;
var<workgroup> ws: array<f32, 4u>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x / 2u;
  let c = wid.x - h * 2u;
  let m = wid.y;
  if (m >= step.ntok) { return; }
  let ns = min((step.pos0 + m) / 64u + 1u, 4u);
  let base = (m * 6u + h) * 4u;
  var pmx = -3.0e38;
  for (var s = lid; s < ns; s += 256u) { pmx = max(pmx, PM[base + s]); }
  for (var ri = 0u; ri < 1u; ri++) { red[ri * 256u + lid] = pmx; }
  workgroupBarrier();
  if (lid < 1u) {
    var tot = red[lid * 256u];
    for (var si = 1u; si < 256u; si++) { tot = max(tot, red[lid * 256u + si]); }
    red[lid * 256u] = tot;
  }
  workgroupBarrier();
  let mx = red[0];
  workgroupBarrier();
  var pl = 0.0;
  for (var s = lid; s < ns; s += 256u) {
    let e = exp(PM[base + s] - mx);
    ws[s] = e;
    pl += e * PL[base + s];
  }
  for (var ri = 0u; ri < 1u; ri++) { red[ri * 256u + lid] = pl; }
  workgroupBarrier();
  if (lid < 1u) {
    var tot = red[lid * 256u];
    for (var si = 1u; si < 256u; si++) { tot = tot + red[lid * 256u + si]; }
    red[lid * 256u] = tot;
  }
  workgroupBarrier();
  let l = red[0];
  let g = lid / 32u;
  let i = lid - g * 32u;
  let dim = c * 32u + i;
  if (g < 8u) {
    var a = 0.0;
    for (var s = g; s < ns; s += 8u) { a += ws[s] * PA[(base + s) * 64u + dim]; }
    part[g * 32u + i] = a;
  }
  workgroupBarrier();
  if (lid < 32u) {
    var a = 0.0;
    for (var q = 0u; q < 8u; q++) { a += part[q * 32u + lid]; }
    O[m * 384u + h * 64u + dim] = a / l;
  }
}
