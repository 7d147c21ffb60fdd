// twlac attention_combine: heads=6,d=64,splits=4,sg=false
struct Step { pos0: u32, ntok: u32, row0: u32, }
@group(0) @binding(4) var<uniform> step: Step;
@group(0) @binding(0) var<storage, read> PM: array<f32>;
@group(0) @binding(1) var<storage, read> PL: array<f32>;
@group(0) @binding(2) var<storage, read> PA: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let m = wid.y;
  if (m >= step.ntok) { return; }
  let ns = min((step.pos0 + m) / 64u + 1u, 4u);
  let base = (m * 6u + h) * 4u;
  var mx = -3.0e38;
  for (var s = 0u; s < ns; s++) { mx = max(mx, PM[base + s]); }
  var l = 0.0;
  for (var s = 0u; s < ns; s++) { l += exp(PM[base + s] - mx) * PL[base + s]; }
  for (var i = lid; i < 64u; i += 64u) {
    var a = 0.0;
    for (var s = 0u; s < ns; s++) { a += exp(PM[base + s] - mx) * PA[(base + s) * 64u + i]; }
    O[m * 384u + h * 64u + i] = a / l;
  }
}
