/** An in-memory Signal key store with Baileys' transaction wrapper, for the sim's virtual phones. */
import {
  addTransactionCapability,
  type SignalDataSet,
  type SignalDataTypeMap,
  type SignalKeyStore,
  type SignalKeyStoreWithTransaction
} from "@whiskeysockets/baileys"
import { silentLogger } from "./silentLogger.js"

export const memoryKeyStore = (): SignalKeyStoreWithTransaction => {
  const data = new Map<string, Map<string, unknown>>()
  const store: SignalKeyStore = {
    get: <T extends keyof SignalDataTypeMap>(type: T, ids: Array<string>) => {
      const bucket = data.get(type)
      const found: { [id: string]: SignalDataTypeMap[T] } = {}
      for (const id of ids) {
        const value = bucket?.get(id)
        // Values only enter a bucket through `set` under the same type key, so the bucket's values are of type T.
        if (value !== undefined) found[id] = value as SignalDataTypeMap[T]
      }
      return found
    },
    set: (set: SignalDataSet) => {
      for (const [type, values] of Object.entries(set)) {
        let bucket = data.get(type)
        if (!bucket) data.set(type, bucket = new Map())
        for (const [id, value] of Object.entries(values ?? {})) {
          if (value === null || value === undefined) bucket.delete(id)
          else bucket.set(id, value)
        }
      }
    }
  }
  return addTransactionCapability(store, silentLogger, { maxCommitRetries: 1, delayBetweenTriesMs: 0 })
}
