// The playground page: a model folder served beside it (./model/), an optional direction
// (./direction.safetensors or dropped on the page), and the emlens bundle on onnxruntime-web.
import * as emlens from './emlens.mjs';

emlens.ort.env.wasm.wasmPaths = './ort/';
// wasm threads need SharedArrayBuffer, i.e. a cross-origin-isolated page (COOP/COEP headers).
emlens.ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
const $ = (id) => document.getElementById(id);
const state = { model: null, direction: null, name: 'none' };

function setStatus(s) {
  $('status').textContent = s;
}

/** layer -> unit vector, from a direction file's tensors (blocks.L.hook_K). */
function directionFrom(buf, name) {
  const t = emlens.readSafetensorsBuffer(buf, name);
  const layers = new Map();
  let kind = null;
  for (const [k, w] of t) {
    const m = /^blocks\.(\d+)\.hook_(\w+)$/.exec(k);
    if (!m) continue;
    kind = m[2];
    let n = 0;
    for (const x of w.data) n += x * x;
    n = Math.sqrt(n);
    layers.set(Number(m[1]), { raw: w.data, unit: w.data.map((x) => (n > 0 ? x / n : 0)) });
  }
  if (layers.size === 0) throw new Error(`${name}: no blocks.L.hook_* tensors`);
  return { layers, kind };
}

function showDirection() {
  const sel = $('layer');
  sel.innerHTML = '';
  if (!state.direction) return;
  for (const l of [...state.direction.layers.keys()].sort((a, b) => a - b)) sel.add(new Option(String(l), String(l)));
  $('dirname').textContent = `${state.name} (hook_${state.direction.kind}, layers ${[...state.direction.layers.keys()].join(', ')})`;
}

function interventions() {
  if (!state.direction) return {};
  const iv = {};
  const layer = Number($('layer').value);
  const scale = Number($('scale').value);
  if (scale !== 0) iv.steer = [{ hook: emlens.hookName(layer, state.direction.kind), vector: state.direction.layers.get(layer).raw, scale }];
  if ($('ablate').checked) iv.ablate = [...state.direction.layers].map(([l, d]) => ({ hook: emlens.hookName(l, state.direction.kind), directions: [d.unit] }));
  return iv;
}

const colour = (v, max) => {
  const a = Math.min(1, Math.abs(v) / (max || 1));
  return v >= 0 ? `rgba(214, 39, 40, ${a * 0.6})` : `rgba(31, 119, 180, ${a * 0.6})`;
};

async function generate() {
  const { model } = state;
  const tok = model.tokenizer;
  $('go').disabled = true;
  setStatus('generating…');
  try {
    const prompt = $('prompt').value;
    const chat = $('chat').checked && tok.hasChatTemplate;
    const ids = chat ? tok.encodeChat([{ role: 'user', content: prompt }], { addGenerationPrompt: true }).ids : tok.encode(prompt);
    const iv = interventions();
    const t0 = performance.now();
    const g = await model.engine.generate([ids], { maxNewTokens: Number($('max').value), temperature: 0, stopIds: tok.eosIds, interventions: iv });
    const ms = performance.now() - t0;
    const gen = g.tokens[0].filter((t) => !tok.eosIds.includes(t));
    const text = tok.decode(gen, { skipSpecialTokens: true });
    const out = $('out');
    out.innerHTML = '';
    out.dataset.text = text;
    out.dataset.tokens = JSON.stringify(gen);
    const all = [...ids, ...gen];
    let proj = null;
    if (state.direction && gen.length) {
      const layers = [...state.direction.layers.keys()].sort((a, b) => a - b);
      const hooks = layers.map((l) => emlens.hookName(l, state.direction.kind));
      const f = await model.engine.forward({ ids: [all], capture: hooks, interventions: iv });
      const D = model.spec.dModel;
      proj = layers.map((l, i) => {
        const h = f.captures.get(hooks[i]);
        const u = state.direction.layers.get(l).unit;
        return all.map((_, t) => {
          let s = 0;
          for (let k = 0; k < D; k++) s += h[t * D + k] * u[k];
          return s;
        });
      });
      const li = layers.indexOf(Number($('layer').value));
      const row = proj[li].slice(ids.length);
      const max = Math.max(...row.map(Math.abs));
      // Each token's text as it adds to the decoded answer (a lone token would lose its leading space).
      let prev = '';
      gen.forEach((t, i) => {
        const span = document.createElement('span');
        span.className = 'tok';
        const upto = tok.decode(gen.slice(0, i + 1), { skipSpecialTokens: true });
        span.textContent = upto.startsWith(prev) ? upto.slice(prev.length) : tok.decode([t], { skipSpecialTokens: true });
        prev = upto;
        span.style.background = colour(row[i], max);
        span.dataset.proj = String(row[i]);
        span.title = `projection ${row[i].toFixed(3)}`;
        out.append(span);
      });
      const labels = all.map((t, i) => `${i}:${tok.decode([t])}`);
      await Plotly.newPlot('heatmap', [{ type: 'heatmap', z: proj, x: labels, y: layers.map(String), colorscale: 'RdBu', reversescale: true, zmid: 0 }], { margin: { t: 10, l: 40, r: 10, b: 90 }, xaxis: { tickangle: -60 }, yaxis: { title: 'layer' } }, { displayModeBar: false });
    } else {
      out.textContent = text;
    }
    out.dataset.done = String(Number(out.dataset.done ?? 0) + 1);
    setStatus(`${gen.length} tokens in ${ms.toFixed(0)} ms (${((gen.length / ms) * 1000).toFixed(1)} tokens/s)`);
  } catch (e) {
    setStatus(`error: ${e.message}`);
    throw e;
  } finally {
    $('go').disabled = false;
  }
}

/** WebGPU when the browser gives an adapter, else wasm (?ep=wasm or ?ep=webgpu decides); and why. */
async function pickEp() {
  const asked = new URLSearchParams(location.search).get('ep');
  if (asked !== null && asked !== 'wasm' && asked !== 'webgpu') throw new Error(`?ep=${asked}: use ep=wasm or ep=webgpu`);
  if (asked) return { ep: asked, why: `asked for by ?ep=${asked}` };
  if (!('gpu' in navigator)) return { ep: 'wasm', why: 'no navigator.gpu' };
  try {
    const a = await navigator.gpu.requestAdapter();
    if (a) return { ep: 'webgpu', why: `adapter ${a.info?.vendor || '?'}/${a.info?.architecture || '?'}` };
    return { ep: 'wasm', why: 'no WebGPU adapter' };
  } catch (e) {
    return { ep: 'wasm', why: `requestAdapter failed: ${e.message}` };
  }
}

async function main() {
  const info = await (await fetch('./playground.json')).json();
  const { ep, why } = await pickEp();
  state.model = await emlens.loadModelFromUrl('./model', { executionProviders: [ep] });
  $('model').textContent = `${info.model} (${state.model.spec.modelType}, ${state.model.spec.nLayers} layers, d ${state.model.spec.dModel})`;
  const threads = ep === 'wasm' ? `, ${emlens.ort.env.wasm.numThreads} thread${emlens.ort.env.wasm.numThreads === 1 ? '' : 's'}` : '';
  $('ep').textContent = `onnxruntime-web on ${ep} (${why}${threads})`;
  document.body.dataset.ep = ep;
  if (!state.model.tokenizer) throw new Error('the model folder has no tokenizer.json');
  if (!state.model.tokenizer.hasChatTemplate) $('chat').checked = false;
  if (info.direction) {
    state.direction = directionFrom(await (await fetch('./direction.safetensors')).arrayBuffer(), info.direction);
    state.name = info.direction;
    showDirection();
    if (info.layer !== undefined) $('layer').value = String(info.layer);
  }
  $('scale').addEventListener('input', () => ($('scaleval').textContent = $('scale').value));
  $('go').addEventListener('click', () => void generate());
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => (e.preventDefault(), drop.classList.add('over')));
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer.files[0];
    if (!f) return;
    if (f.name.endsWith('.html')) window.open(URL.createObjectURL(new Blob([await f.arrayBuffer()], { type: 'text/html' })));
    else {
      state.direction = directionFrom(await f.arrayBuffer(), f.name);
      state.name = f.name;
      showDirection();
    }
  });
  $('go').disabled = false;
  document.body.dataset.ready = '1';
  setStatus('ready');
}

main().catch((e) => {
  setStatus(`error: ${e.message}`);
  document.body.dataset.error = e.message;
});
