/**
 * Memory readings for the density benchmark, taken the same way for the node and for the bare-Baileys baseline.
 * "Running": several readings a second apart, keeping the lowest of each figure (neither process is forced to
 * collect, so this is what the OS and the heap hold in normal operation, garbage included). "Collected": readings
 * each right after a forced full garbage collection, the lowest kept: the memory that is live.
 */
export interface MemorySample {
  readonly rssBytes: number
  readonly heapUsedBytes: number
  readonly externalBytes: number
}

export interface Measured {
  readonly running: MemorySample
  readonly collected: MemorySample
}

export const fromProcess = (usage: NodeJS.MemoryUsage): MemorySample => ({
  rssBytes: usage.rss,
  heapUsedBytes: usage.heapUsed,
  externalBytes: usage.external
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const lowest = (samples: ReadonlyArray<MemorySample>): MemorySample => ({
  rssBytes: Math.min(...samples.map((sample) => sample.rssBytes)),
  heapUsedBytes: Math.min(...samples.map((sample) => sample.heapUsedBytes)),
  externalBytes: Math.min(...samples.map((sample) => sample.externalBytes))
})

export const measure = async (
  read: () => Promise<MemorySample>,
  collect: () => void,
  readings = 5
): Promise<Measured> => {
  const running: Array<MemorySample> = []
  for (let i = 0; i < readings; i++) {
    if (i > 0) await sleep(1000)
    running.push(await read())
  }
  const collected: Array<MemorySample> = []
  for (let i = 0; i < 3; i++) {
    collect()
    await sleep(1000)
    collected.push(await read())
  }
  return { running: lowest(running), collected: lowest(collected) }
}

export const megabytes = (bytes: number) => bytes / (1024 * 1024)
