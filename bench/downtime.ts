export async function downtime(_options: { runs: number; vfCount: number }): Promise<never[]> {
  throw new Error('downtime bench not written yet');
}
