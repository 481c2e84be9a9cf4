/**
 * Facts about the SoC the agent runs on, gathered once at start-up with
 * systeminformation so that no request waits on /proc or /sys.
 */
import os from 'node:os';
import si from 'systeminformation';
import type { SocFacts } from '../schemas/types.ts';

export function gatherSocFacts(): Promise<SocFacts> {
  return Promise.all([si.cpu(), si.mem(), si.osInfo()]).then(
    ([cpu, mem, info]) => ({
      hostname: info.hostname || os.hostname(),
      cpu: {
        manufacturer: cpu.manufacturer,
        brand: cpu.brand,
        cores: cpu.cores,
        physicalCores: cpu.physicalCores,
        speedGHz: Number.isFinite(cpu.speed) ? cpu.speed : 0,
      },
      memory: { totalBytes: mem.total },
      os: { platform: info.platform, distro: info.distro, release: info.release, kernel: info.kernel, arch: info.arch },
    }),
    // systeminformation reads /proc and /sys; if that fails, node:os still knows the basics.
    () => fallbackFacts(),
  );
}

function fallbackFacts(): SocFacts {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    cpu: { manufacturer: '', brand: cpus[0]?.model ?? '', cores: cpus.length, physicalCores: cpus.length, speedGHz: (cpus[0]?.speed ?? 0) / 1000 },
    memory: { totalBytes: os.totalmem() },
    os: { platform: os.platform(), distro: '', release: os.release(), kernel: os.release(), arch: os.arch() },
  };
}
