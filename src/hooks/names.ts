/**
 * Hook point names, as TransformerLens spells them; layers are 0-based.
 * - resid_pre, resid_mid, resid_post: the residual stream before the block, after the attention
 *   add, after the MLP add.
 * - attn_out, mlp_out: what the attention / MLP sub-block adds to the residual stream, [N, d_model]:
 *   o_proj's output (Gemma 2/3: after post_attention_layernorm) and down_proj's output (Gemma 2/3:
 *   after post_feedforward_layernorm). So resid_mid = resid_pre + attn_out and
 *   resid_post = resid_mid + mlp_out, for every family.
 */
export type HookKind = 'resid_pre' | 'attn_out' | 'resid_mid' | 'mlp_out' | 'resid_post';
/** In forward order within a block. */
export const HOOK_KINDS: readonly HookKind[] = ['resid_pre', 'attn_out', 'resid_mid', 'mlp_out', 'resid_post'];

export function hookName(layer: number, kind: HookKind): string {
  return `blocks.${layer}.hook_${kind}`;
}

/** The accepted spelling, for error messages. */
export const HOOK_PATTERN = `blocks.L.hook_{${HOOK_KINDS.join(',')}}`;

export function parseHookName(name: string): { layer: number; kind: HookKind } | null {
  const m = /^blocks\.(\d+)\.hook_(resid_pre|attn_out|resid_mid|mlp_out|resid_post)$/.exec(name);
  return m ? { layer: Number(m[1]), kind: m[2] as HookKind } : null;
}
