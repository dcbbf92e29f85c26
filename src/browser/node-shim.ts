/**
 * What the browser bundle gets for node:fs / node:path: modules the engine's import graph names
 * (config files read from disk) but a page never calls; calling one is a clear error.
 */
const nope = (name: string) => () => {
  throw new Error(`emlens in a browser: ${name} reads files; load a model with loadModelFromUrl or loadModelFromFiles`);
};
export const readFileSync = nope('readFileSync');
export const existsSync = nope('existsSync');
export const statSync = nope('statSync');
export const openSync = nope('openSync');
export const readSync = nope('readSync');
export const closeSync = nope('closeSync');
export const readFile = nope('readFile');
export const join = (...parts: string[]) => parts.join('/');
export const basename = (p: string) => p.split('/').pop() ?? p;
export const dirname = (p: string) => p.split('/').slice(0, -1).join('/');
export const resolve = join;
export default { readFile, readFileSync, existsSync, statSync, openSync, readSync, closeSync, join, basename, dirname, resolve };
