/**
 * The `emlens` field of a request: steering and ablation for that request only. Vectors come
 * inline, or by the name of a direction file the server was started with (`--direction
 * NAME=FILE`); a request can never name a file on the server.
 *
 *   "emlens": {
 *     "steer":  [{"direction": "em", "layer": 3, "scale": 4}, {"hook": "blocks.2.hook_mlp_out", "vector": [...], "scale": 1}],
 *     "ablate": [{"direction": "em", "layers": "all"}, {"layer": 1, "directions": [[...], [...]]}]
 *   }
 */
import type { DirectionFile } from '../io/directions.js';
import { hookName, parseHookName, type HookKind } from '../hooks/names.js';
import type { AblateSpec, Interventions, SteerSpec } from '../hooks/interventions.js';
import { HttpError } from './http.js';

export interface ModelShape {
  dModel: number;
  nLayers: number;
}

const bad = (msg: string): never => {
  throw new HttpError(400, `emlens.${msg}`);
};

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function onlyKeys(o: Record<string, unknown>, keys: string[], where: string): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) bad(`${where}: unknown field "${k}" (expected ${keys.join(', ')})`);
}

function vector(v: unknown, d: number, where: string): Float32Array {
  if (!Array.isArray(v)) return bad(`${where} must be a list of ${d} numbers`);
  if (v.length !== d) bad(`${where} has ${v.length} numbers; the model's width is ${d}`);
  const out = new Float32Array(d);
  v.forEach((x, i) => {
    if (typeof x !== 'number' || !Number.isFinite(x)) bad(`${where}[${i}] is not a finite number`);
    out[i] = x as number;
  });
  return out;
}

function layerOf(v: unknown, shape: ModelShape, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= shape.nLayers) return bad(`${where}: layer must be an integer in 0..${shape.nLayers - 1}`);
  return v;
}

/** The hook of an entry: `hook`, or `layer` at the direction's kind (resid_post for inline vectors). */
function hookOf(e: Record<string, unknown>, shape: ModelShape, kind: HookKind, where: string): string {
  if (e.hook !== undefined && e.layer !== undefined) bad(`${where}: give "hook" or "layer", not both`);
  if (e.hook !== undefined) {
    const h = typeof e.hook === 'string' ? parseHookName(e.hook) : null;
    if (!h) return bad(`${where}: hook must be blocks.L.hook_{resid_pre,attn_out,resid_mid,mlp_out,resid_post}`);
    layerOf(h.layer, shape, where);
    return e.hook as string;
  }
  if (e.layer === undefined) return bad(`${where}: needs "hook" or "layer"`);
  return hookName(layerOf(e.layer, shape, where), kind);
}

function named(e: Record<string, unknown>, dirs: ReadonlyMap<string, DirectionFile>, where: string): DirectionFile {
  if (typeof e.direction !== 'string') return bad(`${where}: direction must be the name of a direction the server was started with`);
  const f = dirs.get(e.direction);
  if (!f) return bad(`${where}: no direction named "${e.direction}" (the server has ${dirs.size ? [...dirs.keys()].join(', ') : 'none; start it with --direction NAME=FILE'})`);
  return f;
}

function fileVector(f: DirectionFile, layer: number, name: string, where: string): Float32Array {
  const v = f.layers.get(layer);
  if (!v) return bad(`${where}: direction "${name}" has no vector for layer ${layer} (it covers ${[...f.layers.keys()].join(', ')})`);
  return v;
}

/** Interventions of one request; errors are 400s naming the entry. */
export function parseInterventions(v: unknown, shape: ModelShape, dirs: ReadonlyMap<string, DirectionFile>): Interventions {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) return bad('must be an object with "steer" and/or "ablate"');
  onlyKeys(v, ['steer', 'ablate'], '');
  const steer: SteerSpec[] = [];
  const ablate: AblateSpec[] = [];
  if (v.steer !== undefined) {
    if (!Array.isArray(v.steer)) bad('steer must be a list');
    (v.steer as unknown[]).forEach((e, i) => {
      const where = `steer[${i}]`;
      if (!isObj(e)) return bad(`${where} must be an object`);
      onlyKeys(e, ['hook', 'layer', 'direction', 'vector', 'scale', 'from_position'], where);
      if ((e.direction === undefined) === (e.vector === undefined)) bad(`${where}: give "direction" (a name) or "vector", exactly one`);
      if (typeof e.scale !== 'number' || !Number.isFinite(e.scale)) bad(`${where}: scale must be a finite number`);
      if (e.from_position !== undefined && (typeof e.from_position !== 'number' || !Number.isInteger(e.from_position) || e.from_position < 0)) bad(`${where}: from_position must be a non-negative integer`);
      let hook: string;
      let vec: Float32Array;
      if (e.direction !== undefined) {
        const f = named(e, dirs, where);
        hook = hookOf(e, shape, f.kind, where);
        const h = parseHookName(hook)!;
        if (h.kind !== f.kind) bad(`${where}: direction "${e.direction}" was taken at hook_${f.kind}, not hook_${h.kind}`);
        vec = fileVector(f, h.layer, e.direction as string, where);
      } else {
        hook = hookOf(e, shape, 'resid_post', where);
        vec = vector(e.vector, shape.dModel, `${where}.vector`);
      }
      steer.push({ hook, vector: vec, scale: e.scale as number, ...(e.from_position !== undefined ? { fromPosition: e.from_position as number } : {}) });
    });
  }
  if (v.ablate !== undefined) {
    if (!Array.isArray(v.ablate)) bad('ablate must be a list');
    (v.ablate as unknown[]).forEach((e, i) => {
      const where = `ablate[${i}]`;
      if (!isObj(e)) return bad(`${where} must be an object`);
      onlyKeys(e, ['hook', 'layer', 'layers', 'direction', 'directions'], where);
      if ((e.direction === undefined) === (e.directions === undefined)) bad(`${where}: give "direction" (a name) or "directions" (a list of vectors), exactly one`);
      if (e.direction !== undefined) {
        const f = named(e, dirs, where);
        if (e.hook !== undefined) bad(`${where}: a named direction takes "layer" or "layers", not "hook"`);
        if (e.layer !== undefined && e.layers !== undefined) bad(`${where}: give "layer" or "layers", not both`);
        const layers =
          e.layers === undefined && e.layer === undefined
            ? bad(`${where}: needs "layer" or "layers" ("all" or a list)`)
            : e.layers === 'all'
              ? [...f.layers.keys()].sort((a, b) => a - b)
              : e.layers !== undefined
                ? Array.isArray(e.layers) && e.layers.length > 0
                  ? e.layers.map((l) => layerOf(l, shape, where))
                  : bad(`${where}: layers must be "all" or a non-empty list of layers`)
                : [layerOf(e.layer, shape, where)];
        for (const l of layers) {
          const vec = fileVector(f, l, e.direction as string, where);
          if (!vec.some((x) => x !== 0)) bad(`${where}: direction "${e.direction}" is all zero at layer ${l}`);
          ablate.push({ hook: hookName(l, f.kind), directions: [vec] });
        }
      } else {
        if (e.layers !== undefined) bad(`${where}: inline directions take one "hook" or "layer", not "layers"`);
        const hook = hookOf(e, shape, 'resid_post', where);
        if (!Array.isArray(e.directions) || e.directions.length === 0) bad(`${where}: directions must be a non-empty list of vectors`);
        const vs = (e.directions as unknown[]).map((x, k) => vector(x, shape.dModel, `${where}.directions[${k}]`));
        if (vs.every((x) => !x.some((y) => y !== 0))) bad(`${where}: every direction is all zero; there is nothing to project out`);
        ablate.push({ hook, directions: vs });
      }
    });
  }
  return { ...(steer.length ? { steer } : {}), ...(ablate.length ? { ablate } : {}) };
}

/** What a response echoes of the interventions it ran with (provenance without the vectors). */
export function describeInterventions(iv: Interventions): Record<string, unknown> | undefined {
  if (!iv.steer && !iv.ablate) return undefined;
  return {
    ...(iv.steer ? { steer: iv.steer.map((s) => ({ hook: s.hook, scale: s.scale, norm: Math.hypot(...s.vector) })) } : {}),
    ...(iv.ablate ? { ablate: iv.ablate.map((a) => ({ hook: a.hook, directions: a.directions.length })) } : {}),
  };
}
