/**
 * The soak of bench/e2e/soak.mjs at a reduced size (the full one is `npm run bench:soak`, with
 * its figures in docs/benchmarks.md): 4 containers x 250 TCP connections through the NAT held and
 * closed, 100 attach/detach cycles and 20 containers killed while attached, 4 SIGKILLs of the
 * daemon during traffic and publishing. Every invariant the soak checks must hold: no fd, TAP,
 * listener, conntrack entry or state-file entry left; no drift between the state file and what
 * is live after a restart; idle connections reset within 1 s of it; RSS under 256 MiB.
 */
import { describe, expect, it } from 'vitest';
import { runSoak } from '../../bench/e2e/soak.mjs';
import { requireSandbox } from './harness.js';

requireSandbox();

describe('soak (reduced)', () => {
  it('nothing leaks and nothing drifts', async () => {
    const seed = Number(process.env.USERNET_SOAK_SEED ?? (Date.now() % 2 ** 31));
    const report = await runSoak({ containers: 4, connections: 250, holdSeconds: 1, cycles: 100, deaths: 20, kills: 4, seed });
    // The seed is in the report (and in a failure's message) so that a failing run can be replayed.
    expect(report.failures, `seed ${seed}: ${JSON.stringify(report, null, 1)}`).toEqual([]);
    expect(report.connections?.open).toBe(1000);
    expect(report.connections?.peakRssMiB).toBeLessThan(256);
    expect(report.kills?.resetAfterMs.max).toBeLessThanOrEqual(1000);
  }, 600_000);
});
