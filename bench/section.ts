/** What a benchmark section is: a named function from options to a result (figures + raw data). */

export interface BenchOptions {
  /** Untimed runs before timing (the first also compiles the graph). */
  warmup: number;
  /** Timed runs; the median is reported. */
  runs: number;
}

export interface Row {
  metric: string;
  value: number;
  unit: string;
  /** e.g. '>= 0.80'; the table shows whether the value meets it (a report, never an assertion). */
  goal?: { op: '>=' | '<='; value: number };
  /** Decimals to print (default 2). */
  digits?: number;
}

export interface SectionResult {
  section: string;
  rows: Row[];
  /** Raw measurements for --json. */
  data: unknown;
}

export interface Section {
  name: string;
  description: string;
  run(opts: BenchOptions): Promise<SectionResult>;
}

export function meets(r: Row): boolean | undefined {
  if (!r.goal) return undefined;
  return r.goal.op === '>=' ? r.value >= r.goal.value : r.value <= r.goal.value;
}
