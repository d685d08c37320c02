/** Types of bench/e2e/soak.mjs, for the e2e test that runs it at a reduced size. */
export interface SoakOptions {
  containers?: number;
  /** Connections per container. */
  connections?: number;
  holdSeconds?: number;
  cycles?: number;
  deaths?: number;
  kills?: number;
  seed?: number;
  maxRssMiB?: number;
  /** Wait for the closed connections' TIME_WAIT entries to expire (240 s) and check the table is back to its baseline. */
  waitExpiry?: boolean;
}

export interface SoakReport {
  options: Required<SoakOptions>;
  /** Every invariant that did not hold; empty when nothing leaked and nothing drifted. */
  failures: string[];
  seconds: number;
  connections?: { total: number; open: number; openMs: number; closeMs: number; settleMs: number; peakRssMiB: number; baseline: Record<string, number>; held: Record<string, number>; after: Record<string, number>; expired: Record<string, number> | null };
  churn?: { cycles: number; deaths: number; cyclesMs: number; deathsMs: number; baseline: Record<string, number>; afterCycles: Record<string, number>; after: Record<string, number>; fdsEvery: number[] };
  kills?: { seed: number; kills: number; churned: number; fetched: number; resetAfterMs: { max: number | null; median: number | null }; results: Array<Record<string, unknown>> };
}

export function runSoak(options?: SoakOptions): Promise<SoakReport>;
